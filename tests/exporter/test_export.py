"""Tests for tuner.exporter and ``tuner export``: studies built through Optuna's API with known values.

The matrix is checked cell by cell (NaN cells, zero-shot row from study attrs, dev-based choice
when a cell has several trials), then results.csv/.md, matrix.json (labels, no password), the
non-grid extras (leaderboard, best config, refine study) and the CLI's one-line errors.

Rows are asserted against literal labels written out here, never recomputed with the exporter's
(or the registry's) rule: a trial's row is the set of losses that were on, cos_mse included; the
seed's 9 rows come first, then other combinations by size and registry order.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

from tuner.cli import main  # noqa: E402
from tuner.config import RunConfig  # noqa: E402
from tuner.errors import TunerError  # noqa: E402
from tuner.exporter import build_matrix, export_study, mask_url  # noqa: E402
from tuner.exporter import files as files_mod  # noqa: E402
from tuner.losses.registry import LossSpec, register_loss, unregister_loss  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

MODELS = ["sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased"]
DATASETS = ["stsb", "sickr"]
GRID_LOSSES = ["cos_mse", "cosent", "angle"]
GRID_WEIGHTS = {"cos_mse": {}, "cosent": {"cosent": 1.0}, "angle": {"angle": 1.0}}   # what the grid trains
SEED_LAYOUT = ["zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle",
               "cosent+ibn+angle"]
R = {row: i for i, row in enumerate(SEED_LAYOUT)}


def grid_trial(model: str, loss: str, dataset: str, dev: float | None, test: float | None,
               pooling: str = "avg", value: float | None = None, state=optuna.trial.TrialState.COMPLETE):
    config = RunConfig(model=model, train=[dataset], eval=[dataset], protocol="seed", weights=GRID_WEIGHTS[loss],
                       pooling=pooling)
    attrs = {"model": model, "loss": loss, "config": config.to_dict(), "protocol": "seed", "metric": "spearman",
             "pooling": pooling}
    if dev is not None:
        attrs[f"scores.dev.{dataset}"] = dev
    if test is not None:
        attrs[f"scores.test.{dataset}"] = test
    return optuna.trial.create_trial(
        state=state,
        params={"model": model, "loss": loss, "dataset": dataset, "pooling": pooling},
        distributions={"model": CategoricalDistribution(MODELS), "loss": CategoricalDistribution(GRID_LOSSES),
                       "dataset": CategoricalDistribution(DATASETS),
                       "pooling": CategoricalDistribution(["avg", "cls"])},
        value=(dev if value is None else value) if state == optuna.trial.TrialState.COMPLETE else None,
        user_attrs=attrs)


def make_grid_study(storage: str | None, name: str = "grid") -> optuna.Study:
    """Known values: (model 0, cosent, stsb) has two trials where the test-best has the lower dev."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("spec", {"name": name, "sampler": "grid", "storage": "postgresql://u:***@h/db"})
    study.set_user_attr("metric", "spearman")
    study.set_user_attr("protocol", "seed")
    study.set_user_attr("task", "sts")
    m0, m1 = MODELS
    study.set_user_attr(f"zero_shot.{m0}.stsb.test", 0.70)
    study.set_user_attr(f"zero_shot.{m0}.stsb.dev", 0.71)
    study.set_user_attr(f"zero_shot.{m0}.sickr.test", 0.60)
    study.set_user_attr(f"zero_shot.{m1}.stsb.test", 0.50)
    trials = [
        grid_trial(m0, "cos_mse", "stsb", 0.80, 0.78),                  # 0
        grid_trial(m0, "cosent", "stsb", 0.85, 0.83, pooling="avg"),    # 1: dev-best, lower test -> chosen
        grid_trial(m0, "cosent", "stsb", 0.84, 0.90, pooling="cls"),    # 2: test-best, lower dev -> not chosen
        grid_trial(m0, "angle", "sickr", 0.75, 0.74),                   # 3
        grid_trial(m1, "cosent", "sickr", 0.66, 0.65),                  # 4
        grid_trial(m1, "angle", "stsb", None, 0.61, value=0.62),        # 5: no dev attr -> ranked by value
        grid_trial(m1, "cos_mse", "stsb", None, None, state=optuna.trial.TrialState.FAIL),  # 6: not complete
        grid_trial(m1, "cos_mse", "sickr", 0.99, 0.99, state=optuna.trial.TrialState.PRUNED),  # 7: not complete
    ]
    for trial in trials:
        study.add_trial(trial)
    return study


@pytest.fixture()
def storage(tmp_path: Path) -> str:
    """A SQLite URL, for the CLI tests (the library tests use in-memory studies: faster)."""
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture()
def grid_study() -> optuna.Study:
    return make_grid_study(None)


@pytest.fixture()
def grid_db(storage: str) -> str:
    make_grid_study(storage)
    return storage


# A search over which losses are on: trial i trains with exactly these weights (the losses not named
# are off), and TPE_ROWS[i] is the row it must land in, written out by hand.
TPE_WEIGHTS = [
    {"cos_mse": 0.3, "cosent": 0.9, "ibn": 0.5, "angle": 0.2},    # 0
    {"cosent": 0.8},                                              # 1
    {"cos_mse": 0.4, "cosent": 0.7},                              # 2
    {"ibn": 0.6, "angle": 0.3},                                   # 3
    {"cos_mse": 1.0},                                             # 4
    {"cosent": 0.9, "ibn": 0.4},                                  # 5
    {"cos_mse": 0.2, "angle": 0.9},                               # 6
    {"cosent": 0.5, "ibn": 0.5, "angle": 0.5},                    # 7
    {"cos_mse": 0.5, "cosent": 1.0, "ibn": 0.3, "angle": 0.6},    # 8
    {"angle": 0.7},                                               # 9
    {"cos_mse": 0.6, "ibn": 0.2, "angle": 0.4},                   # 10
    {"cosent": 0.95, "angle": 0.25},                              # 11
]
TPE_ROWS = ["cos_mse+cosent+ibn+angle", "cosent", "cos_mse+cosent", "ibn+angle", "cos_mse", "cosent+ibn",
            "cos_mse+angle", "cosent+ibn+angle", "cos_mse+cosent+ibn+angle", "angle", "cos_mse+ibn+angle",
            "cosent+angle"]
TPE_LAYOUT = SEED_LAYOUT + ["cos_mse+cosent", "cos_mse+angle", "cos_mse+ibn+angle", "cos_mse+cosent+ibn+angle"]
LOSSES_WITH_TAU = {"cosent": 5.0, "ibn": 10.0, "angle": 0.5}        # tau of trial i: base + i (angle: + 0.1 i)


def search_trial(number: int, weights: dict[str, float], dev: dict[str, float], test: dict[str, float],
                 *, model: str = MODELS[0], extra_losses: tuple[str, ...] = ()) -> Any:
    """A trial as the on/off search space records it: ``use_<loss>`` for every loss, ``w_``/``tau_`` only
    for the losses that are on, the run config, its row (``loss``) and its losses."""
    losses = ("cos_mse", "cosent", "ibn", "angle", *extra_losses)
    taus = {loss: round(base + (0.1 if loss == "angle" else 1.0) * number, 3)
            for loss, base in {**LOSSES_WITH_TAU, **{x: 2.0 for x in extra_losses}}.items() if loss in weights}
    lr, pooling = (1e-5, 2e-5, 5e-5)[number % 3], ("avg", "cls")[number % 2]
    params: dict[str, Any] = {f"use_{loss}": loss in weights for loss in losses}
    params.update({f"w_{loss}": w for loss, w in weights.items()})
    params.update({f"tau_{loss}": t for loss, t in taus.items()})
    params.update({"pooling": pooling, "lr": lr})
    dists: dict[str, Any] = {name: (CategoricalDistribution([False, True]) if name.startswith("use_") else
                                    FloatDistribution(0.05, 1.0) if name.startswith("w_") else
                                    FloatDistribution(0.1, 50.0, log=True)) for name in params}
    dists.update({"pooling": CategoricalDistribution(["avg", "cls"]), "lr": FloatDistribution(1e-6, 1e-4, log=True)})
    config = RunConfig(model=model, train=["stsb"], eval=list(dev), weights=weights, taus=taus, pooling=pooling,
                       lr=lr, max_train_examples=1200)
    attrs = {"model": model, "config": config.to_dict(), "loss": config.loss, "losses": list(config.losses),
             "pooling": pooling, "train_datasets": ["stsb"], "eval_datasets": list(dev), "protocol": "standard",
             "metric": "spearman", **{f"scores.dev.{k}": v for k, v in dev.items()},
             **{f"scores.test.{k}": v for k, v in test.items()}}
    return optuna.trial.create_trial(params=params, distributions=dists, value=float(np.mean(list(dev.values()))),
                                     user_attrs=attrs)


def make_tpe_study(storage: str | None, name: str = "tpe", n: int = 12) -> optuna.Study:
    """A non-grid study searching which losses are on; every trial scored on two datasets.

    Trial i has mean dev 0.75 + 0.0075 i (trial 11 is the best); trials 0 and 8 share a row, and
    trial 0 has the far higher test score but the lower dev score."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("metric", "spearman")
    study.set_user_attr("protocol", "standard")
    study.set_user_attr("sampler", "tpe")
    study.set_user_attr("task", "sts")
    for i in range(n):
        dev = {"stsb": 0.80 + 0.01 * i, "sts12": 0.70 + 0.005 * i}
        test = {"stsb": 0.95 if i == 0 else 0.79 + 0.01 * i, "sts12": 0.69 + 0.004 * i}
        study.add_trial(search_trial(i, TPE_WEIGHTS[i], dev, test))
    return study


def toy_loss_fn(a: Any, b: Any, labels: Any, tau: float = 2.0) -> Any:
    """The toy loss registered by :func:`toy_loss` (a valid pair loss; never trained here)."""
    return ((a - b) ** 2).mean() * 0 + tau * 0


@pytest.fixture()
def toy_loss() -> Iterator[LossSpec]:
    """A fifth loss, added through the registry alone and removed afterwards."""
    spec = register_loss(LossSpec("toy", "Toy", "Toy", "test_export:toy_loss_fn", default_tau=2.0,
                                  color="#00ced1", marker="H"))
    try:
        yield spec
    finally:
        unregister_loss("toy")


def make_toy_study() -> optuna.Study:
    """Trials 0..2: cosent, toy, cosent+toy (the toy loss must be registered)."""
    study = optuna.create_study(study_name="toy", direction="maximize")
    study.set_user_attr("metric", "spearman")
    study.set_user_attr("sampler", "tpe")
    study.set_user_attr(f"zero_shot.{MODELS[0]}.stsb.test", 0.70)
    for i, weights in enumerate(({"cosent": 1.0}, {"toy": 0.8}, {"cosent": 0.6, "toy": 0.4})):
        study.add_trial(search_trial(i, weights, {"stsb": 0.80 + 0.02 * i}, {"stsb": 0.78 + 0.02 * i},
                                     extra_losses=("toy",)))
    return study


# --------------------------------------------------------------------------- matrix, cell by cell
def test_grid_matrix_cell_by_cell(grid_study: optuna.Study) -> None:
    trials = grid_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    m = build_matrix(trials, grid_study.user_attrs, "test", study_name="grid")
    assert m.shape == (2, 9, 2)
    assert m.models == tuple(MODELS) and m.datasets == tuple(DATASETS) and list(m.rows) == SEED_LAYOUT
    expected = np.full((2, 9, 2), np.nan)
    expected[0, R["zero_shot"], 0] = 0.70
    expected[0, R["zero_shot"], 1] = 0.60
    expected[1, R["zero_shot"], 0] = 0.50
    expected[0, R["cos_mse"], 0] = 0.78
    expected[0, R["cosent"], 0] = 0.83          # dev 0.85 beats dev 0.84 although its test is lower
    expected[0, R["angle"], 1] = 0.74
    expected[1, R["cosent"], 1] = 0.65
    expected[1, R["angle"], 0] = 0.61
    np.testing.assert_array_equal(np.isnan(m.values), np.isnan(expected))
    np.testing.assert_allclose(m.values[~np.isnan(expected)], expected[~np.isnan(expected)])
    assert m.trials[0, R["cosent"], 0] == 1
    assert m.trials[1, R["angle"], 0] == 5
    assert m.trials[0, R["zero_shot"], 0] == -1
    assert m.filled == 8
    assert m.is_grid and m.metric == "spearman" and m.protocol == "seed"
    (choice,) = m.choices
    assert choice["chosen"] == 1 and choice["by"] == "scores.dev.stsb"
    assert [c["trial"] for c in choice["candidates"]] == [1, 2]
    (fallback,) = m.fallbacks
    assert fallback["trial"] == 5 and "no scores.dev.stsb" in fallback["why"]


def test_dev_split_uses_dev_scores_and_same_choice(grid_study: optuna.Study) -> None:
    trials = grid_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    m = build_matrix(trials, grid_study.user_attrs, "dev")
    assert m.values[0, R["cosent"], 0] == pytest.approx(0.85)
    assert m.trials[0, R["cosent"], 0] == 1
    assert m.values[0, R["zero_shot"], 0] == pytest.approx(0.71)
    assert math.isnan(m.values[0, R["zero_shot"], 1])          # only a test zero-shot score was recorded
    assert m.values[1, R["angle"], 0] == pytest.approx(0.62)  # single eval dataset: trial value is its dev score


def test_choice_never_follows_test_even_when_order_flips() -> None:
    study = optuna.create_study(study_name="flip", direction="maximize")
    m0 = MODELS[0]
    study.add_trial(grid_trial(m0, "cosent", "stsb", 0.70, 0.95, pooling="cls"))   # higher test, lower dev
    study.add_trial(grid_trial(m0, "cosent", "stsb", 0.90, 0.60, pooling="avg"))   # the dev-best
    m = build_matrix(study.get_trials(deepcopy=False), {}, "test")
    assert m.values[0, R["cosent"], 0] == pytest.approx(0.60)
    assert m.trials[0, R["cosent"], 0] == 1


def test_search_rows_are_the_losses_that_were_on() -> None:
    """Rows of a search over which losses are on: cos_mse counts as a loss; the seed's 9 rows come first,
    then the other combinations with data by size and registry order."""
    study = make_tpe_study(None)
    trials = study.get_trials(deepcopy=False)
    m = build_matrix(trials, study.user_attrs, "test")
    assert not m.is_grid
    assert list(m.rows) == TPE_LAYOUT and m.shape == (1, 13, 2)
    assert m.datasets == ("stsb", "sts12")
    placed = {int(m.trials[0, ri, di]): m.rows[ri] for ri in range(len(m.rows)) for di in range(2)
              if m.trials[0, ri, di] >= 0}
    assert placed == {n: TPE_ROWS[n] for n in range(1, 12)}           # trial 0 lost both its cells to trial 8
    full = TPE_LAYOUT.index("cos_mse+cosent+ibn+angle")
    assert m.trials[0, full, 0] == 8 and m.values[0, full, 0] == pytest.approx(0.87)   # not trial 0's 0.95
    assert len(m.choices) == 2
    for choice in m.choices:
        assert choice["loss"] == "cos_mse+cosent+ibn+angle" and [c["trial"] for c in choice["candidates"]] == [8, 0]
    assert np.isnan(m.values[0, TPE_LAYOUT.index("zero_shot")]).all()
    assert np.isnan(m.values[0, TPE_LAYOUT.index("cos_mse+cosent"), :]).sum() == 0


def test_all_fifteen_combinations_make_sixteen_rows() -> None:
    """Every non-empty combination of the four built-in losses has a trial: zero-shot + 15 rows, in this order."""
    combos = [("cos_mse",), ("cosent",), ("ibn",), ("angle",), ("cosent", "ibn"), ("cosent", "angle"),
              ("ibn", "angle"), ("cosent", "ibn", "angle"), ("cos_mse", "cosent"), ("cos_mse", "ibn"),
              ("cos_mse", "angle"), ("cos_mse", "cosent", "ibn"), ("cos_mse", "cosent", "angle"),
              ("cos_mse", "ibn", "angle"), ("cos_mse", "cosent", "ibn", "angle")]
    study = optuna.create_study(direction="maximize")
    for i, on in enumerate(reversed(combos)):                     # trial order must not matter
        study.add_trial(search_trial(i, {loss: 0.5 for loss in on}, {"stsb": 0.8}, {"stsb": 0.7}))
    m = build_matrix(study.get_trials(deepcopy=False), {}, "test")
    assert list(m.rows) == [
        "zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle",
        "cosent+ibn+angle", "cos_mse+cosent", "cos_mse+ibn", "cos_mse+angle", "cos_mse+cosent+ibn",
        "cos_mse+cosent+angle", "cos_mse+ibn+angle", "cos_mse+cosent+ibn+angle"]
    assert m.filled == 15 and list(m.trials[0, 1:, 0]) == list(range(14, -1, -1))
    meta = m.to_json()
    assert meta["loss_titles"][9] == "CosMSE+CoSENT" and meta["loss_titles"][-1] == "CosMSE+CoSENT+IBN+Angle"
    assert "seed's 9 rows first" in meta["rows_rule"]


def test_legacy_trials_rows_count_cos_mse() -> None:
    """Studies recorded before run configs: the ``weights`` attr decides (it has cos_mse; the old ``loss``
    attr left it out), else ``loss``, else the ``w_``/``use_`` params."""
    legacy = {"w_cos_mse": 0.297, "w_cosent": 0.956, "w_ibn": 0.572, "w_angle": 0.272}
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(               # 0: like sts-cpu's best trial
        params=legacy, distributions={k: FloatDistribution(0, 1) for k in legacy}, value=0.88,
        user_attrs={"model": "m", "loss": "cosent+ibn+angle", "scores.dev.stsb": 0.88, "scores.test.stsb": 0.85,
                    "weights": {"cos_mse": 0.297, "cosent": 0.956, "ibn": 0.572, "angle": 0.272}}))
    study.add_trial(optuna.trial.create_trial(               # 1: params only, weight 0 = off
        params={"w_cosent": 0.0, "w_ibn": 0.4, "w_angle": 0.0},
        distributions={k: FloatDistribution(0, 1) for k in ("w_cosent", "w_ibn", "w_angle")}, value=0.8,
        user_attrs={"model": "m", "scores.test.stsb": 0.7}))
    study.add_trial(optuna.trial.create_trial(               # 2: on/off params, one weight sampled
        params={"use_cos_mse": True, "use_angle": False, "w_cos_mse": 0.3},
        distributions={"use_cos_mse": CategoricalDistribution([False, True]),
                       "use_angle": CategoricalDistribution([False, True]), "w_cos_mse": FloatDistribution(0, 1)},
        value=0.8, user_attrs={"model": "m", "scores.test.stsb": 0.6}))
    m = build_matrix(study.get_trials(deepcopy=False), {}, "test")
    assert list(m.rows) == SEED_LAYOUT + ["cos_mse+cosent+ibn+angle"]
    assert m.trials[0, 9, 0] == 0 and m.trials[0, R["ibn"], 0] == 1 and m.trials[0, R["cos_mse"], 0] == 2


def test_zero_shot_row_with_dotted_model_name() -> None:
    study = optuna.create_study(study_name="dots")
    model = "./models/v1.2"
    study.set_user_attr(f"zero_shot.{model}.stsb.test", 0.5)
    study.add_trial(optuna.trial.create_trial(
        params={}, distributions={}, value=0.8,
        user_attrs={"model": model, "loss": "cosent", "scores.dev.stsb": 0.8, "scores.test.stsb": 0.7}))
    m = build_matrix(study.get_trials(deepcopy=False), study.user_attrs, "test")
    assert m.models == (model,)
    assert m.values[0, R["zero_shot"], 0] == pytest.approx(0.5)
    assert m.values[0, R["cosent"], 0] == pytest.approx(0.7)


def test_unknown_loss_row_is_skipped_and_reported() -> None:
    study = optuna.create_study(study_name="odd")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.8,
                                              user_attrs={"model": "m", "loss": "triplet", "scores.test.stsb": 0.7}))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.8,
                                              user_attrs={"model": "m", "loss": "CoSENT+IBN", "scores.test.stsb": 0.6}))
    m = build_matrix(study.get_trials(deepcopy=False), {}, "test")
    assert m.skipped == [{"trial": 0, "reason": "unknown loss row 'triplet'"}]
    assert m.values[0, R["cosent+ibn"], 0] == pytest.approx(0.6)


# --------------------------------------------------------------------------- files
def test_export_files(grid_study: optuna.Study, tmp_path: Path) -> None:
    out = tmp_path / "out"
    secret_url = "postgresql://tuner:s3cr3t-pw@db.example:5432/tuner"
    result = export_study(grid_study, out, storage_url=secret_url, plots=False)
    values = np.load(out / "matrix.npy")
    assert values.dtype == np.float64 and values.shape == (2, 9, 2)
    assert values[0, R["cosent"], 0] == pytest.approx(0.83)
    assert np.isnan(values[1, R["ibn"], 0])
    assert result.filled == 8 and result.to_dict()["filled_cells"] == 8

    text = (out / "matrix.json").read_text()
    for path in out.rglob("*"):
        assert b"s3cr3t" not in path.read_bytes(), path
    meta = json.loads(text)
    assert meta["storage"] == "postgresql://tuner:***@db.example:5432/tuner"
    assert meta["models"] == MODELS and meta["datasets"] == DATASETS and meta["losses"] == SEED_LAYOUT
    assert meta["loss_titles"] == ["Without Fine-Tuning", "Default Cosine Similarity", "CoSENT", "In-Batch Negatives",
                                   "Angle", "CoSENT+IBN", "CoSENT+Angle", "IBN+Angle", "CoSENT+IBN+Angle"]
    assert meta["rows_rule"].startswith("the seed's 9 rows first, in the seed's order (zero_shot, cos_mse, cosent,")
    assert meta["metric"] == "spearman" and meta["split"] == "test" and meta["protocol"] == "seed"
    assert meta["study"] == "grid" and meta["shape"] == [2, 9, 2]
    assert meta["trials"][0][R["cosent"]][0] == 1 and meta["trials"][1][R["ibn"]][0] is None
    assert meta["selection"]["by"] == "dev" and "never" in meta["selection"]["rule"]
    assert meta["selection"]["cells_with_several_trials"][0]["chosen"] == 1
    assert {"optuna", "numpy", "matplotlib", "python"} <= set(meta["versions"])

    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == ["model", "loss", "dataset", "dev", "test", "trial", "params", "n_seeds", "std",
                                 "ci_low", "ci_high", "trials", "marked", "diff_vs_best", "p_vs_best",
                                 "diff_vs_zero_shot", "p_vs_zero_shot"]
    assert len(csv) == 2 * 9 * 2
    cell = csv[(csv.model == MODELS[0]) & (csv.loss == "cosent") & (csv.dataset == "stsb")].iloc[0]
    assert cell.dev == pytest.approx(0.85) and cell.test == pytest.approx(0.83) and cell.trial == 1
    assert json.loads(cell.params)["pooling"] == "avg"
    zero = csv[(csv.model == MODELS[0]) & (csv.loss == "zero_shot") & (csv.dataset == "stsb")].iloc[0]
    assert zero.test == pytest.approx(0.70) and zero.dev == pytest.approx(0.71) and pd.isna(zero.trial)

    md = (out / "results.md").read_text()
    assert f"## {MODELS[0]}" in md and f"## {MODELS[1]}" in md
    assert "| Loss | stsb | sickr | Mean |" in md
    assert "| CoSENT | **83.00** | n/a | 83.00 † |" in md        # best stsb column of model 0
    assert "| Without Fine-Tuning | 70.00 | 60.00 | **65.00** |" in md     # the only complete mean
    assert "| CoSENT | n/a | **65.00** | **65.00** † |" in md               # model 1: no complete mean
    assert "| Angle | n/a | **74.00** | 74.00 † |" in md
    assert "left out below: In-Batch Negatives, CoSENT+IBN, CoSENT+Angle, IBN+Angle, CoSENT+IBN+Angle." in md
    assert "| In-Batch Negatives |" not in md
    # Grid study: no leaderboard / optuna extras.
    assert not (out / "leaderboard.csv").exists()


def test_export_snapshot_reads_trials_once(grid_study: optuna.Study, tmp_path: Path, monkeypatch) -> None:
    calls = []
    original = optuna.Study.get_trials

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "get_trials", spy)
    before = [(t.number, t.state, t.value, t.user_attrs) for t in original(grid_study)]
    export_study(grid_study, tmp_path / "o", plots=False)
    assert calls == [{"deepcopy": False}]      # every state: the Optuna plots keep pruned/failed trials' numbers
    assert [(t.number, t.state, t.value, t.user_attrs) for t in original(grid_study)] == before   # untouched


def test_export_non_grid_extras(tmp_path: Path) -> None:
    study = make_tpe_study(None)
    out = tmp_path / "tpe"
    result = export_study(study, out, top_k=5, plots=False)     # Optuna's plots: tests/exporter/test_plots.py
    assert result.shape == (1, 13, 2) and result.skipped_files == {}
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["trial"]) == [11, 10, 9, 8, 7]                                 # by mean dev, best first
    assert list(board["loss"]) == ["cosent+angle", "cos_mse+ibn+angle", "angle", "cos_mse+cosent+ibn+angle",
                                   "cosent+ibn+angle"]
    assert list(board.columns) == ["rank", "trial", "value", "model", "loss",
                                   "use_cos_mse", "use_cosent", "use_ibn", "use_angle",
                                   "w_cos_mse", "w_cosent", "w_ibn", "w_angle", "tau_cosent", "tau_ibn", "tau_angle",
                                   "lr", "pooling", "dev.stsb", "dev.sts12", "test.stsb", "test.sts12"]
    assert list(board["use_cos_mse"]) == [False, True, False, True, False]
    assert pd.isna(board["w_ibn"][0]) and board["w_angle"][0] == pytest.approx(0.25)   # ibn off in trial 11
    md = (out / "leaderboard.md").read_text()
    assert "Leaderboard of study `tpe`" in md
    assert "| 1 | 11 | 83.25 | sentence-transformers/all-MiniLM-L6-v2 | CoSENT+Angle | off | on | off | on |" in md
    assert "| 2 | 10 | 82.50 | sentence-transformers/all-MiniLM-L6-v2 | CosMSE+IBN+Angle | on | off | on | on |" in md

    best = json.loads((out / "best_finetune.json").read_text())
    argv = ["python", "-m", "tuner", "finetune", "--model", "sentence-transformers/all-MiniLM-L6-v2",
            "--eval", "stsb,sts12", "--weights", "cosent=0.95,angle=0.25", "--taus", "cosent=16,angle=1.6",
            "--pooling", "cls", "--lr", "5e-05", "--max-train-examples", "1200"]
    assert best["argv"] == argv and best["command"] == " ".join(argv)
    assert best["trial"] == 11 and best["objective"] == pytest.approx(0.8325)
    assert best["loss"] == "cosent+angle" and best["losses"] == ["cosent", "angle"]
    assert best["config"]["weights"] == {"cos_mse": 0.0, "cosent": 0.95, "ibn": 0.0, "angle": 0.25}
    assert best["config"]["max_train_examples"] == 1200 and best["config"]["pooling"] == "cls"
    assert best["scores"] == {"dev": {"stsb": pytest.approx(0.91), "sts12": pytest.approx(0.755)},
                              "test": {"stsb": pytest.approx(0.90), "sts12": pytest.approx(0.734)}}
    assert best["params"]["use_cosent"] is True and "w_ibn" not in best["params"]
    from tuner.cli import build_parser

    parsed = build_parser().parse_args(best["argv"][3:])                 # the finetune CLI accepts it as is
    assert parsed.command == "finetune"

    doc = tomllib.loads((out / "best_study.toml").read_text())
    assert doc["search"] == {"losses": "cosent+angle",
                             "w_cosent": {"low": 0.633333, "high": 1.425},
                             "tau_cosent": {"low": 10.6667, "high": 24.0, "log": True},
                             "w_angle": {"low": 0.166667, "high": 0.375},
                             "tau_angle": {"low": 1.06667, "high": 2.4, "log": True},
                             "lr": {"low": 3.33333e-05, "high": 7.5e-05, "log": True}}
    assert doc["train"] == {"ibn_positive_threshold": 0.6, "ibn_duplicates": "positive", "pooling": "cls", "batch_size": 32, "max_seq_length": 128,
                            "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "precision": "auto",
                            "length_grouping": True,
                            # #24 mining (off: no negatives mined), the trial's settings like the others
                            "mine_num_negatives": 0, "mine_range_min": 0, "mine_sampling": "top"}
    assert doc["budget"] == {"epochs": 1, "max_train_examples": 1200}
    assert doc["data"] == {"train": ["stsb"], "eval": ["stsb", "sts12"]}
    assert {k: doc[k] for k in ("name", "task", "models", "protocol", "sampler", "pruner", "n_trials", "seed")} == {
        "name": "tpe-best", "task": "sts", "models": [MODELS[0]], "protocol": "standard", "sampler": "tpe",
        "pruner": "none", "n_trials": 10, "seed": 42}
    assert result.to_dict()["sampler"] == "not grid" and result.plots == []


def test_best_files_come_from_the_recorded_config_not_the_study_file(tmp_path: Path) -> None:
    """A study file (spec attr) saying something else does not leak into the best-config files."""
    study = make_tpe_study(None, n=3)
    study.set_user_attr("spec", {"name": "tpe", "train": {"batch_size": 64, "max_seq_length": 32},
                                 "budget": {"max_train_examples": 99}, "seed": 7})
    export_study(study, tmp_path, plots=False)
    best = json.loads((tmp_path / "best_finetune.json").read_text())
    assert best["config"]["batch_size"] == 32 and best["config"]["max_seq_length"] == 128
    assert best["config"]["seed"] == 42 and "--max-train-examples" in best["argv"]
    assert best["argv"][best["argv"].index("--max-train-examples") + 1] == "1200"
    doc = tomllib.loads((tmp_path / "best_study.toml").read_text())
    assert doc["train"]["batch_size"] == 32 and doc["budget"]["max_train_examples"] == 1200 and doc["seed"] == 42


def test_best_study_toml_is_a_valid_study_file(tmp_path: Path) -> None:
    """The refine study parses with the study parser (the on/off [search] format)."""
    import tuner.study

    if not hasattr(tuner.study, "__path__"):
        pytest.skip("the study parser with the on/off [search] format (package tuner.study) is not in this tree yet")
    from tuner.study import parse_spec

    export_study(make_tpe_study(None), tmp_path, plots=False)
    spec = parse_spec(tomllib.loads((tmp_path / "best_study.toml").read_text()))
    assert spec.name == "tpe-best" and spec.sampler == "tpe" and spec.n_trials == 10


def test_best_files_of_a_trial_run_with_several_seeds(tmp_path: Path) -> None:
    """``repeats = 3``: the scores are means over seeds; both files say so and the refine study keeps 3 seeds."""
    from tuner.exporter.best import best_finetune, best_study_toml
    from tuner.study import parse_spec

    trial = make_tpe_study(None, n=1).trials[0]
    by_seed = {"42": {"dev": {"stsb": 0.79}}, "43": {"dev": {"stsb": 0.80}}, "44": {"dev": {"stsb": 0.81}}}
    trial = optuna.trial.create_trial(params=trial.params, distributions=trial.distributions, value=trial.value,
                                      user_attrs={**trial.user_attrs, "scores_by_seed": by_seed})
    best = best_finetune(trial, "tpe")
    assert best["scores_by_seed"] == by_seed and "means over the seeds" in best["note"]
    assert "--seed" not in best["argv"]                                   # the first seed, 42, is the default
    doc = tomllib.loads(best_study_toml(trial, {}, "tpe"))
    assert doc["repeats"] == 3 and doc["seed"] == 42
    assert parse_spec(doc).repeats == 3


def test_legacy_study_without_configs_gets_no_best_files(tmp_path: Path, capsys, storage: str) -> None:
    """Trials recorded before run configs: matrix, tables and leaderboard, but no rebuilt command."""
    study = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"w_cos_mse": 0.3, "w_cosent": 0.9}, value=0.86,
        distributions={"w_cos_mse": FloatDistribution(0, 1), "w_cosent": FloatDistribution(0, 1)},
        user_attrs={"model": "m", "loss": "cosent", "weights": {"cos_mse": 0.3, "cosent": 0.9},
                    "scores.dev.stsb": 0.86, "scores.test.stsb": 0.84}))
    out = tmp_path / "old"
    assert main(["export", "--study", "old", "--storage", storage, "--out", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "not written: best_finetune.json: trial 0 has no recorded run config" in text
    assert "re-export it with the tuner version that ran it" in text
    assert (out / "leaderboard.csv").exists() and not (out / "best_finetune.json").exists()
    assert not (out / "best_study.toml").exists()
    assert pd.read_csv(out / "leaderboard.csv")["loss"].tolist() == ["cos_mse+cosent"]
    assert json.loads((out / "matrix.json").read_text())["losses"][-1] == "cos_mse+cosent"


# --------------------------------------------------------------------------- a loss added through the registry
def test_toy_loss_gets_its_rows_everywhere(toy_loss: LossSpec, tmp_path: Path) -> None:
    """A registered loss shows up in matrix.json, results.csv/.md, the leaderboard and both best files."""
    result = export_study(make_toy_study(), tmp_path, plots=False)
    meta = json.loads((tmp_path / "matrix.json").read_text())
    assert meta["losses"] == SEED_LAYOUT + ["toy", "cosent+toy"]
    assert meta["loss_titles"][-2:] == ["Toy", "CoSENT+Toy"]
    assert "toy" in meta["rows_rule"]
    assert result.matrix.values[0, 9, 0] == pytest.approx(0.80) and result.matrix.values[0, 10, 0] == pytest.approx(0.82)
    csv = pd.read_csv(tmp_path / "results.csv")
    assert csv[csv.loss == "cosent+toy"].test.tolist() == [pytest.approx(0.82)]
    md = (tmp_path / "results.md").read_text()
    assert "| Toy | 80.00 | 80.00 |" in md and "| CoSENT+Toy | **82.00** | **82.00** |" in md
    assert "| CoSENT | 78.00 | 78.00 |" in md and "| Without Fine-Tuning | 70.00 | 70.00 |" in md
    board = (tmp_path / "leaderboard.md").read_text()
    assert "| CoSENT+Toy |" in board and "use_toy" in board and "tau_toy" in board
    best = json.loads((tmp_path / "best_finetune.json").read_text())
    assert best["loss"] == "cosent+toy" and best["config"]["taus"]["toy"] == 4.0
    assert best["argv"][best["argv"].index("--weights") + 1] == "cosent=0.6,toy=0.4"
    assert best["argv"][best["argv"].index("--taus") + 1] == "cosent=7,toy=4"
    doc = tomllib.loads((tmp_path / "best_study.toml").read_text())
    assert doc["search"]["losses"] == "cosent+toy"
    assert doc["search"]["w_toy"] == {"low": 0.266667, "high": 0.6}
    assert doc["search"]["tau_toy"] == {"low": 2.66667, "high": 6.0, "log": True}


def test_mask_url() -> None:
    assert mask_url("postgresql://user:pw@host/db") == "postgresql://user:***@host/db"
    assert mask_url("mysql+pymysql://u:p@ss@h:3306/d?charset=utf8") == "mysql+pymysql://u:***@h:3306/d?charset=utf8"
    assert mask_url("postgresql://h/db?user=u&password=x") == "postgresql://h/db?user=u&password=***"
    assert mask_url("sqlite:///tmp/a.db") == "sqlite:///tmp/a.db"
    assert mask_url(None) is None


def test_no_complete_trials(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="empty")
    study.add_trial(grid_trial(MODELS[0], "cosent", "stsb", None, None, state=optuna.trial.TrialState.FAIL))
    with pytest.raises(TunerError) as err:
        export_study(study, tmp_path / "o")
    assert str(err.value) == ("study 'empty' has no COMPLETE trials yet; run `python -m tuner optimize --study empty` "
                              "first")


def test_unwritable_output(grid_study: optuna.Study, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TunerError, match="is a file"):
        export_study(grid_study, blocker)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_mod.os, "replace", full)
    with pytest.raises(TunerError) as err:
        export_study(grid_study, tmp_path / "full", plots=False)
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert not [p for p in (tmp_path / "full").iterdir()]          # no half-written or temp files left
    assert len(grid_study.get_trials()) == 8


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(grid_study: optuna.Study, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(TunerError, match="cannot write to output folder"):
            export_study(grid_study, folder / "sub", plots=False)
        with pytest.raises(TunerError, match="cannot write to output folder"):
            export_study(grid_study, folder, plots=False)
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- CLI
def test_cli_export_json(grid_db: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["export", "--study", "grid", "--storage", grid_db, "--out", str(out), "--json", "--no-plots"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [2, 9, 2] and summary["filled_cells"] == 8 and summary["cells"] == 36
    assert Path(summary["files"]["matrix"]) == out / "matrix.npy"
    assert summary["sampler"] == "grid" and summary["split"] == "test"


def test_cli_export_text_and_dev_split(grid_db: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["export", "--study", "grid", "--storage", grid_db, "--out", str(out), "--split", "dev",
                 "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "6/36 cells filled" in text and "chose by dev score" in text   # 2 zero-shot cells have no dev score
    assert json.loads((out / "matrix.json").read_text())["split"] == "dev"


@pytest.mark.parametrize("case", ["unknown_study", "no_trials", "missing_db", "out_is_file"])
def test_cli_export_errors(case: str, grid_db: str, tmp_path: Path, capsys) -> None:
    optuna.create_study(study_name="fresh", storage=grid_db)
    out = tmp_path / "out"
    study, url = "grid", grid_db
    if case == "unknown_study":
        study = "nope"
    elif case == "no_trials":
        study = "fresh"
    elif case == "missing_db":
        url = f"sqlite:///{tmp_path / 'missing.db'}"
    else:
        out.write_text("not a folder")
    assert main(["export", "--study", study, "--storage", url, "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    expected = {"unknown_study": "no study 'nope' in storage sqlite:///", "no_trials": "has no COMPLETE trials yet",
                "missing_db": "does not exist", "out_is_file": "is a file"}[case]
    assert expected in err
    if case == "unknown_study":
        assert "studies there: fresh, grid" in err
    assert not (tmp_path / "missing.db").exists()


def test_wins_line_counts_best_rows_and_ties() -> None:
    from tuner.exporter.tables import wins_line

    rows = ("zero_shot", "cosent", "ibn")
    block = np.array([[0.70, 0.60, 0.50],
                      [0.80, 0.60, np.nan],
                      [0.75, 0.55, np.nan]])
    line = wins_line(block, rows, ("a", "b", "c"))
    assert line == ("Wins (best on a dataset; ties count for each): Without Fine-Tuning 2/3 (b, c); "
                    "CoSENT 2/3 (a, b).")
    assert wins_line(block[:, :1], rows, ("a",)) == ""


def test_best_command_scores_full_splits_while_config_keeps_the_trial_eval_budget(tmp_path: Path) -> None:
    """A study's max_eval_examples is a per-trial budget: the re-run command scores full dev/test."""
    study = optuna.create_study(direction="maximize")
    config = RunConfig(train=["stsb"], weights={"cosent": 1.0}, max_train_examples=1200, max_eval_examples=750)
    trial = study.ask()
    for key, value in {"config": config.to_dict(), "loss": config.loss, "scores.dev.stsb": 0.8,
                       "scores.test.stsb": 0.7}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.8)
    export_study(study, tmp_path, plots=False)
    best = json.loads((tmp_path / "best_finetune.json").read_text())
    assert best["config"]["max_eval_examples"] is None and best["trial_max_eval_examples"] == 750
    assert "--max-eval-examples" not in best["argv"] and "--max-train-examples" in best["argv"]
    assert best["command_scores"] == "the full dev and test splits (the trial scored 750-pair samples)"
