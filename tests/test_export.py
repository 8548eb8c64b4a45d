"""Tests for tuner.exporter and ``tuner export``: studies built through Optuna's API with known values.

The matrix is checked cell by cell (NaN cells, zero-shot row from study attrs, dev-based choice
when a cell has several trials), then results.csv/.md, matrix.json (labels, no password), the
non-grid extras (leaderboard, best config, Optuna plots) and the CLI's one-line errors.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

from tuner.cli import main  # noqa: E402
from tuner.combos import LOSS_ROWS  # noqa: E402
from tuner.errors import TunerError  # noqa: E402
from tuner.exporter import build_matrix, export_study, mask_url  # noqa: E402
from tuner.exporter import matrix as matrix_mod  # noqa: E402
from tuner.study import parse_spec  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

MODELS = ["sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased"]
DATASETS = ["stsb", "sickr"]
GRID_LOSSES = ["cos_mse", "cosent", "angle"]
R = {row: i for i, row in enumerate(LOSS_ROWS)}


def grid_trial(model: str, loss: str, dataset: str, dev: float | None, test: float | None,
               pooling: str = "avg", value: float | None = None, state=optuna.trial.TrialState.COMPLETE):
    attrs = {"model": model, "loss": loss, "protocol": "seed", "metric": "spearman", "pooling": pooling}
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


def make_tpe_study(storage: str | None, name: str = "tpe", n: int = 12) -> optuna.Study:
    """A non-grid study: continuous weights/taus, every trial scored on two datasets."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("metric", "spearman")
    study.set_user_attr("protocol", "standard")
    dists = {"w_cosent": FloatDistribution(0, 1), "w_ibn": FloatDistribution(0, 1), "w_angle": FloatDistribution(0, 1),
             "tau_cosent": FloatDistribution(5, 50), "pooling": CategoricalDistribution(["avg", "cls"]),
             "lr": FloatDistribution(1e-6, 1e-4, log=True)}
    rng = np.random.default_rng(0)
    for i in range(n):
        w = {"cosent": float(rng.choice([0.0, rng.uniform(0.1, 1)])), "ibn": float(rng.choice([0.0, rng.uniform(0.1, 1)])),
             "angle": float(rng.choice([0.0, rng.uniform(0.1, 1)]))}
        params = {"w_cosent": w["cosent"], "w_ibn": w["ibn"], "w_angle": w["angle"],
                  "tau_cosent": float(rng.uniform(5, 50)), "pooling": ["avg", "cls"][i % 2],
                  "lr": float(10 ** rng.uniform(-6, -4))}
        dev = {"stsb": 0.80 + 0.01 * i, "sts12": 0.70 + 0.005 * i}
        test = {"stsb": 0.79 + 0.01 * i, "sts12": 0.69 + 0.004 * i}
        attrs = {"model": MODELS[0], "weights": w, "taus": {"cosent": params["tau_cosent"], "ibn": 20.0, "angle": 1.0},
                 "pooling": params["pooling"], "train_datasets": ["stsb"], "eval_datasets": ["stsb", "sts12"],
                 "protocol": "standard", "metric": "spearman",
                 **{f"scores.dev.{k}": v for k, v in dev.items()}, **{f"scores.test.{k}": v for k, v in test.items()}}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(np.mean(list(dev.values()))),
                                                  user_attrs=attrs))
    return study


# --------------------------------------------------------------------------- matrix, cell by cell
def test_grid_matrix_cell_by_cell(grid_study: optuna.Study) -> None:
    trials = grid_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    m = build_matrix(trials, grid_study.user_attrs, "test", study_name="grid")
    assert m.shape == (2, 9, 2)
    assert m.models == tuple(MODELS) and m.datasets == tuple(DATASETS) and m.rows == LOSS_ROWS
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


def test_rows_from_weights_and_datasets_from_scores() -> None:
    study = make_tpe_study(None, n=4)
    trials = study.get_trials(deepcopy=False)
    m = build_matrix(trials, study.user_attrs, "test")
    assert not m.is_grid
    assert m.datasets == ("stsb", "sts12")
    for trial in trials:
        active = [k for k in ("cosent", "ibn", "angle") if trial.user_attrs["weights"][k] > 0]
        row = "+".join(active) or "cos_mse"
        assert trial.number in m.trials[0, R[row]]


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
    assert meta["models"] == MODELS and meta["datasets"] == DATASETS and meta["losses"] == list(LOSS_ROWS)
    assert meta["loss_titles"][0] == "Without Fine-Tuning" and meta["loss_titles"][1] == "Default Cosine Similarity"
    assert meta["metric"] == "spearman" and meta["split"] == "test" and meta["protocol"] == "seed"
    assert meta["study"] == "grid" and meta["shape"] == [2, 9, 2]
    assert meta["trials"][0][R["cosent"]][0] == 1 and meta["trials"][1][R["ibn"]][0] is None
    assert meta["selection"]["by"] == "dev" and "never" in meta["selection"]["rule"]
    assert meta["selection"]["cells_with_several_trials"][0]["chosen"] == 1
    assert {"optuna", "numpy", "matplotlib", "python"} <= set(meta["versions"])

    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == ["model", "loss", "dataset", "dev", "test", "trial", "params"]
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
    assert calls == [{"deepcopy": False, "states": (optuna.trial.TrialState.COMPLETE,)}]
    assert [(t.number, t.state, t.value, t.user_attrs) for t in original(grid_study)] == before   # untouched


def test_export_non_grid_extras(tmp_path: Path) -> None:
    study = make_tpe_study(None)
    out = tmp_path / "tpe"
    result = export_study(study, out, top_k=5, plots=False)     # Optuna's plots: tests/test_plots.py
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 5 and list(board["trial"]) == [11, 10, 9, 8, 7]          # by mean dev, best first
    assert {"w_cosent", "tau_cosent", "pooling", "dev.stsb", "test.sts12"} <= set(board.columns)
    assert "Leaderboard of study `tpe`" in (out / "leaderboard.md").read_text()
    best = json.loads((out / "best_finetune.json").read_text())
    assert best["trial"] == 11 and best["argv"][:4] == ["python", "-m", "tuner", "finetune"]
    assert "--weights" in best["argv"] and "--train" in best["argv"] and "--pooling" in best["argv"]
    assert best["command"].startswith("python -m tuner finetune --model sentence-transformers/all-MiniLM-L6-v2")
    doc = tomllib.loads((out / "best_study.toml").read_text())
    spec = parse_spec(doc)                                               # a valid study file
    assert spec.name == "tpe-best" and spec.sampler == "tpe" and spec.models == [MODELS[0]]
    trial = study.trials[11]
    for name, value in trial.params.items():
        param = spec.search[name]
        if name == "pooling" or value == 0:
            assert param.kind == "fixed" and param.value == value
        else:
            assert param.low < value < param.high
    assert result.to_dict()["sampler"] == "not grid" and result.plots == []


def test_best_config_from_a_real_study_file() -> None:
    """With the spec of studies/sts.toml as the study attr, both best-config files are ready to use."""
    from tuner.exporter.leaderboard import best_finetune, best_study_toml

    raw = tomllib.loads((Path(__file__).resolve().parents[1] / "studies" / "sts.toml").read_text())
    params = {"w_cosent": 0.7, "w_ibn": 0.0, "w_angle": 0.3, "tau_cosent": 25.0, "tau_ibn": 10.0, "tau_angle": 2.0,
              "pooling": "avg", "lr": 3e-5, "epochs": 2}
    trial = optuna.trial.create_trial(
        params=params, distributions={k: (CategoricalDistribution(["cls", "avg"]) if k == "pooling" else
                                          CategoricalDistribution([1, 2]) if k == "epochs" else
                                          FloatDistribution(0, 100)) for k in params},
        value=0.86, user_attrs={"model": "all-MiniLM-L6-v2", "weights": {"cosent": 0.7, "ibn": 0.0, "angle": 0.3},
                                "taus": {"cosent": 25.0, "ibn": 10.0, "angle": 2.0}, "pooling": "avg",
                                "train_datasets": ["stsb"], "eval_datasets": ["stsb"], "protocol": "standard",
                                "scores.dev.stsb": 0.86, "scores.test.stsb": 0.84})
    attrs = {"spec": raw, "sampler": "tpe", "protocol": "standard"}
    config = best_finetune(trial, attrs, "sts")
    argv = config["argv"]
    assert argv[argv.index("--weights") + 1] == "cosent=0.7,ibn=0,angle=0.3"
    assert argv[argv.index("--lr") + 1] == "3e-05" and argv[argv.index("--epochs") + 1] == "2"
    assert argv[argv.index("--batch-size") + 1] == "32" and argv[argv.index("--max-seq-length") + 1] == "128"
    assert argv[argv.index("--protocol") + 1] == "standard" and "--eval" not in argv
    from tuner.cli import build_parser

    parsed = build_parser().parse_args(argv[3:])                        # the finetune CLI accepts it as is
    assert parsed.command == "finetune" and parsed.pooling == "avg" and parsed.seed == 42

    text = best_study_toml(trial, attrs, "sts")
    spec = parse_spec(tomllib.loads(text))
    assert spec.name == "sts-best" and spec.n_trials == 10 and spec.train_datasets == ["stsb"]
    assert spec.search["w_ibn"].kind == "fixed" and spec.search["w_ibn"].value == 0.0   # loss row kept
    assert spec.search["pooling"].value == "avg" and spec.search["epochs"].value == 2
    assert spec.search["w_cosent"].low < 0.7 < spec.search["w_cosent"].high
    assert spec.search["lr"].log and spec.search["lr"].low < 3e-5 < spec.search["lr"].high
    assert spec.pruner.type == "median"                                  # sts.toml's pruner, with its eval_every
    assert "storage" not in tomllib.loads(text)


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

    monkeypatch.setattr(matrix_mod.os, "replace", full)
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
