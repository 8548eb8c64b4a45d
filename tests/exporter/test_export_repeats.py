"""Export with seed repeats, per-item records and significance marks (synthetic in-memory studies).

Expected numbers are written out by hand: the mean/std/t-interval of three seeds, which cells are
bold, which wins count, and the trial numbers on the Optuna history plot.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

from tuner.exporter import build_matrix, export_study  # noqa: E402
from tuner.exporter.items import MAX_ATTR_BYTES, decode_items, encode_items  # noqa: E402
from tuner.exporter.optuna_plots import history_axes  # noqa: E402

MODEL = "tiny"
DATASETS = ["stsb", "sickr"]
N_ITEMS = 60
GOLD = {name: np.random.default_rng(i).uniform(0, 5, N_ITEMS).round(2) for i, name in enumerate(DATASETS)}


def noisy(dataset: str, sd: float, seed: int) -> np.ndarray:
    """Per-pair 'similarities': gold plus noise (small sd: a good system, large: a poor one)."""
    return GOLD[dataset] + np.random.default_rng(1000 + seed).normal(0, sd, N_ITEMS)


def cell_trial(loss: str, dataset: str, seed: int, dev: float, test: float, items: np.ndarray,
               pooling: str = "avg") -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=dev,
        params={"model": MODEL, "loss": loss, "dataset": dataset, "pooling": pooling, "seed": seed},
        distributions={"model": CategoricalDistribution([MODEL]),
                       "loss": CategoricalDistribution(["cos_mse", "cosent", "angle"]),
                       "dataset": CategoricalDistribution(DATASETS), "pooling": CategoricalDistribution(["avg", "cls"]),
                       "seed": CategoricalDistribution([0, 1, 2])},
        user_attrs={"model": MODEL, "loss": loss, "metric": "spearman", "protocol": "seed",
                    f"scores.dev.{dataset}": dev, f"scores.test.{dataset}": test,
                    f"items.test.{dataset}": encode_items(items, "similarity")})


def repeats_study() -> optuna.Study:
    """A grid with repeats = 3 on two datasets.

    stsb: CoSENT (items near gold) is clearly best. sickr: cos_mse and Angle have identical items
    (both bold, no win). A second CoSENT configuration (cls pooling) has the single best dev seed
    (0.90) but the lower mean dev (0.8333 < 0.86): the cell keeps the avg configuration's mean.
    """
    study = optuna.create_study(direction="maximize")
    for key, value in {"sampler": "grid", "metric": "spearman", "protocol": "seed", "task": "sts"}.items():
        study.set_user_attr(key, value)
    for name, zero_test, zero_sd in (("stsb", 0.60, 2.5), ("sickr", 0.55, 3.0)):
        study.set_user_attr(f"zero_shot.{MODEL}.{name}.test", zero_test)
        study.set_user_attr(f"zero_shot.{MODEL}.{name}.dev", zero_test)
        study.set_user_attr(f"zero_shot_items.{MODEL}.{name}.test", encode_items(noisy(name, zero_sd, 99), "similarity"))
        study.set_user_attr(f"gold.{name}.test", encode_items(GOLD[name], "gold"))
    study.set_user_attr("overlap.stsb", {"dataset": "stsb", "task": "sts", "test": {
        "n": 60, "any_in_train": 0.25, "both_in_train": 0.1, "pair_in_train": 0.0}})
    study.set_user_attr("eval_rows.stsb", {"dataset": "stsb", "max_eval_examples": 60, "test": {
        "rows": 60, "of": 1379, "figure": "word_overlap_spearman", "sample": 57.1, "full": 56.48, "rule": "stratified"}})
    trials = []
    for seed, (dev, test) in enumerate([(0.85, 0.80), (0.86, 0.82), (0.87, 0.84)]):
        trials.append(cell_trial("cosent", "stsb", seed, dev, test, noisy("stsb", 0.1, seed)))
    for seed, (dev, test) in enumerate([(0.90, 0.95), (0.80, 0.95), (0.80, 0.95)]):
        trials.append(cell_trial("cosent", "stsb", seed, dev, test, noisy("stsb", 0.1, seed), pooling="cls"))
    for seed, test in enumerate([0.69, 0.70, 0.71]):
        trials.append(cell_trial("cos_mse", "stsb", seed, test, test, noisy("stsb", 2.5, 10 + seed)))
    for seed, test in enumerate([0.50, 0.52, 0.54]):
        trials.append(cell_trial("angle", "stsb", seed, test, test, noisy("stsb", 4.0, 20 + seed)))
    for seed, test in enumerate([0.60, 0.61, 0.62]):
        trials.append(cell_trial("cosent", "sickr", seed, test, test, noisy("sickr", 3.0, 30 + seed)))
    for seed, test in enumerate([0.74, 0.75, 0.76]):                  # cos_mse and angle: the same items
        trials.append(cell_trial("cos_mse", "sickr", seed, test, test, noisy("sickr", 0.8, 40 + seed)))
    for seed, test in enumerate([0.75, 0.75, 0.75]):
        trials.append(cell_trial("angle", "sickr", seed, test, test, noisy("sickr", 0.8, 40 + seed)))
    for trial in trials:
        study.add_trial(trial)
    return study


def test_repeats_mean_std_and_t_interval_by_hand(tmp_path: Path) -> None:
    study = repeats_study()
    export_study(study, tmp_path, plots=False)
    values = np.load(tmp_path / "matrix.npy")
    cosent, cos_mse, angle = 2, 1, 4                      # the seed's row order
    assert values[0, cosent, 0] == pytest.approx(0.82)    # mean of 0.80, 0.82, 0.84 (not the lucky cls seed's 0.95)
    assert values[0, cos_mse, 1] == pytest.approx(0.75) and values[0, angle, 0] == pytest.approx(0.52)
    meta = json.loads((tmp_path / "matrix.json").read_text())
    cell = next(c for c in meta["cells_detail"] if c["loss"] == "cosent" and c["dataset"] == "stsb")
    assert cell["n_seeds"] == 3 and cell["trials"] == [0, 1, 2] and cell["seeds"] == [0, 1, 2]
    assert cell["std"] == pytest.approx(0.02, abs=1e-9)
    # t(0.975, df=2) = 4.302653; half width = 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert cell["ci95"] == pytest.approx([0.770317, 0.869683], abs=2e-6)
    same = next(c for c in meta["cells_detail"] if c["loss"] == "angle" and c["dataset"] == "sickr")
    assert same["std"] == 0.0 and same["ci95"] == [0.75, 0.75]
    zero = next(c for c in meta["cells_detail"] if c["loss"] == "zero_shot" and c["dataset"] == "stsb")
    assert zero["n_seeds"] == 1 and zero["std"] is None and zero["ci95"] is None
    choice = next(c for c in meta["selection"]["cells_with_several_trials"] if c["loss"] == "cosent")
    assert choice["chosen_trials"] == [0, 1, 2] and choice["candidates"][1]["trials"] == [3, 4, 5]
    assert meta["overlap"]["stsb"]["test"]["any_in_train"] == 0.25 and meta["overlap"]["sickr"] is None
    assert meta["eval_rows"]["stsb"]["test"]["of"] == 1379 and meta["eval_rows"]["sickr"] is None
    assert ("- stsb: test a stratified sample of 60 of 1,379 rows (word-overlap Spearman 57.1 on the sample, "
            "56.48 on the file)") in (tmp_path / "results.md").read_text()


def test_clear_winner_is_the_only_bold_and_identical_rows_tie(tmp_path: Path) -> None:
    export_study(repeats_study(), tmp_path, plots=False)
    md = (tmp_path / "results.md").read_text()
    assert "| Without Fine-Tuning | 60.00 | 55.00 | 57.50 |" in md
    assert "| Default Cosine Similarity | 70.00 ± 1.00 | **75.00 ± 1.00** | **72.50** |" in md
    assert "| CoSENT | **82.00 ± 2.00** | 61.00 ± 1.00 | 71.50 |" in md
    assert "| Angle | 52.00 ± 2.00 | **75.00 ± 0.00** | 63.50 |" in md
    assert (f"{WINS_HEAD}): CoSENT 1/2 (stsb).") in md        # three seeds per cell: not called exploratory
    assert "exploratory" not in md
    assert "- stsb: test 60 pairs: 25.0% share a sentence with train, 10.0% both sentences, 0.0% identical pairs" in md
    meta = json.loads((tmp_path / "matrix.json").read_text())
    assert meta["significance"]["all_tested"] is True and meta["significance"]["n_resamples"] == 2000
    assert meta["significance"]["correction"] == "holm" and meta["significance"]["p"] == "two_sided"
    assert meta["significance"]["max_training_seeds"] == 3 and meta["significance"]["exploratory"] is False
    tie = next(c for c in meta["cells_detail"] if c["loss"] == "angle" and c["dataset"] == "sickr")
    other = next(c for c in meta["cells_detail"] if c["loss"] == "cos_mse" and c["dataset"] == "sickr")
    tested = tie if "vs_best" in tie else other              # whichever of the two is not the best
    assert tested["vs_best"]["difference"] == 0.0 and tested["vs_best"]["p_first_not_better"] == 1.0
    assert tie["marked"] is True and other["marked"] is True
    poor = next(c for c in meta["cells_detail"] if c["loss"] == "angle" and c["dataset"] == "stsb")
    assert poor["marked"] is False and poor["vs_best"]["p_first_not_better"] == 0.0
    assert poor["vs_best"]["p_holm"] == 0.0 and poor["vs_best"]["below"] is True
    csv = (tmp_path / "results.csv").read_text()
    assert "p_vs_best" in csv.splitlines()[0]


WINS_HEAD = ("Significant wins (best row significantly above every other row: paired bootstrap over the test items, "
             "two-sided p < 0.05 after Holm's correction over the column's comparisons")
EXPLORATORY = "; one training seed per cell, so over test items only: exploratory"


def one_seed_study() -> optuna.Study:
    """One training seed per cell. stsb: CoSENT's items beat zero-shot's at a two-sided p of 0.019 and
    cos_mse's and Angle's (the same items) at 0.031 each: a win for an uncorrected test, a tie after
    Holm over the column's three comparisons (0.019 x 3 = 0.057; 0.031 x 2 = 0.062). sickr: CoSENT is
    far above every other row (a win either way)."""
    study = optuna.create_study(direction="maximize")
    for key, value in {"sampler": "grid", "metric": "spearman", "protocol": "seed", "task": "sts"}.items():
        study.set_user_attr(key, value)
    for name, zero_test in (("stsb", 0.60), ("sickr", 0.55)):
        study.set_user_attr(f"zero_shot.{MODEL}.{name}.test", zero_test)
        study.set_user_attr(f"zero_shot.{MODEL}.{name}.dev", zero_test)
        study.set_user_attr(f"zero_shot_items.{MODEL}.{name}.test", encode_items(noisy(name, 3.0, 99), "similarity"))
        study.set_user_attr(f"gold.{name}.test", encode_items(GOLD[name], "gold"))
    close = noisy("stsb", 1.4, 707)                                   # p two-sided 0.031 against CoSENT's
    for trial in (cell_trial("cosent", "stsb", 0, 0.80, 0.80, noisy("stsb", 1.0, 500)),
                  cell_trial("cos_mse", "stsb", 0, 0.76, 0.76, close),
                  cell_trial("angle", "stsb", 0, 0.75, 0.75, close),
                  cell_trial("cosent", "sickr", 0, 0.90, 0.90, noisy("sickr", 0.1, 30)),
                  cell_trial("cos_mse", "sickr", 0, 0.60, 0.60, noisy("sickr", 3.0, 31)),
                  cell_trial("angle", "sickr", 0, 0.58, 0.58, noisy("sickr", 3.0, 32))):
        study.add_trial(trial)
    return study


def test_holm_turns_an_uncorrected_win_into_a_tie_and_one_seed_is_exploratory(tmp_path: Path) -> None:
    export_study(one_seed_study(), tmp_path, plots=False)
    meta = json.loads((tmp_path / "matrix.json").read_text())
    stsb = {c["loss"]: c for c in meta["cells_detail"] if c["dataset"] == "stsb"}
    for loss in ("cos_mse", "angle"):
        versus = stsb[loss]["vs_best"]
        # the former rule (one-sided, uncorrected) and even an uncorrected two-sided test call CoSENT a win ...
        assert versus["difference"] > 0 and versus["p_first_not_better"] < 0.05 and versus["p_two_sided"] == 0.031
        # ... Holm over the column's family (zero-shot, cos_mse, angle against CoSENT) does not
        assert versus["p_holm"] == pytest.approx(0.062) and versus["below"] is False and stsb[loss]["marked"] is True
    zero = stsb["zero_shot"]["vs_best"]                                  # 0.019 uncorrected, 0.019 x 3 after Holm
    assert zero["p_two_sided"] == 0.019 and zero["p_holm"] == pytest.approx(0.057) and stsb["zero_shot"]["marked"]
    sig = meta["significance"]
    assert sig["correction"] == "holm" and sig["max_training_seeds"] == 1 and sig["exploratory"] is True
    assert "one training seed per cell" in sig["exploratory_why"]
    md = (tmp_path / "results.md").read_text()
    assert f"{WINS_HEAD}{EXPLORATORY}): CoSENT 1/2 (sickr)." in md          # stsb is a tie, not a win
    assert "| CoSENT | **80.00** | **90.00** |" in md and "| Default Cosine Similarity | **76.00** | 60.00 |" in md
    assert "| Without Fine-Tuning | **60.00** | 55.00 |" in md
    assert "after Holm's correction" in md and "over test items only: exploratory" in md.split("\n")[2]
    import pandas as pd

    frame = pd.read_csv(tmp_path / "results.csv")
    row = frame[(frame["loss"] == "cos_mse") & (frame["dataset"] == "stsb")].iloc[0]
    assert row["p_vs_best"] == pytest.approx(0.062)                      # the Holm-adjusted p the rule uses


def test_below_best_is_holm_over_the_column() -> None:
    from tuner.exporter.significance import below_best

    # uncorrected, both are below the best (p < 0.05); Holm: 0.03 x 2 = 0.06 and 0.04 -> max 0.06: a tie
    verdict = below_best({"a": (0.01, 0.03), "b": (0.01, 0.04)})
    assert verdict["a"] == (pytest.approx(0.06), False) and verdict["b"] == (pytest.approx(0.06), False)
    verdict = below_best({"a": (0.01, 0.001), "b": (0.01, 0.04), "c": (0.2, None)})
    assert verdict["a"] == (pytest.approx(0.002), True) and verdict["b"] == (pytest.approx(0.04), True)
    assert verdict["c"] == (None, False)                                # not tested: never below
    assert below_best({"a": (-0.01, 0.0)})["a"][1] is False              # a negative difference is not "below"


def test_without_items_the_single_winner_rule_is_kept_and_said() -> None:
    study = repeats_study()
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        trial.user_attrs.pop("items.test.stsb", None)
    m = build_matrix(trials, study.user_attrs, "test")
    sig = m.significance.to_json()
    assert sig["all_tested"] is False
    stsb = next(c for c in sig["columns"] if c["dataset"] == "stsb")
    assert stsb["tested"] is False and "no per-item outputs" in stsb["why_not"]
    assert m.significance.marks[0, :, 0].tolist() == [False, False, True, False, False, False, False, False, False]


def test_items_record_is_subsampled_the_same_way_and_fits_mysql_text() -> None:
    big = np.linspace(-1.0, 1.0, 10_000)
    a, b = encode_items(big, "similarity"), encode_items(big[::-1], "similarity")
    assert a["n"] == 10_000 and len(a["values"]) == 3000 and a["sample_seed"] == 0
    assert a["idx"] == b["idx"] and len(json.dumps(a)) < MAX_ATTR_BYTES
    small = encode_items([1, 0, 1], "correct")
    assert small == {"kind": "correct", "n": 3, "idx": None, "sample_seed": None, "values": [1, 0, 1]}
    n, idx, values = decode_items(encode_items([0.123456789, 0.5], "similarity"))
    assert (n, idx, values.tolist()) == (2, None, [0.12346, 0.5])


def test_history_plot_keeps_the_study_trial_numbers() -> None:
    import matplotlib.pyplot as plt

    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}
    state = optuna.trial.TrialState
    study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, value=0.1))         # 0
    study.add_trial(optuna.trial.create_trial(state=state.PRUNED, params={"x": 0.2}, distributions=dist,
                                              intermediate_values={0: 0.05}))                         # 1
    study.add_trial(optuna.trial.create_trial(state=state.FAIL, params={"x": 0.3}, distributions=dist))   # 2
    study.add_trial(optuna.trial.create_trial(params={"x": 0.4}, distributions=dist, value=0.4))         # 3
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=0.3))         # 4
    study.ask()                                                                                          # 5 running
    ax = history_axes(study.get_trials(deepcopy=False), study.directions)
    try:
        by_label = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
        assert by_label["Objective Value"] == [0, 3, 4]
        assert by_label["pruned (last reported value)"] == [1]
        assert by_label["failed or not finished"] == [2, 5]
        best = next(line for line in ax.get_lines() if line.get_label() == "Best Value")
        assert best.get_xdata().tolist() == [0, 1, 2, 3, 4, 5]     # Optuna's best-so-far line, at every number
    finally:
        plt.close(ax.figure)


def test_export_optuna_history_png_from_every_state(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}
    for i in range(4):
        state = optuna.trial.TrialState.PRUNED if i == 1 else optuna.trial.TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            state=state, params={"x": i / 4}, distributions=dist, value=None if i == 1 else i / 4,
            user_attrs={"loss": "cosent", "model": MODEL, "scores.dev.stsb": i / 4, "scores.test.stsb": i / 4}))
    result = export_study(study, tmp_path)
    assert (tmp_path / "plots" / "optuna_optimization_history.png").exists(), result.skipped_plots


@pytest.mark.slow
def test_tiny_grid_with_repeats_end_to_end(tmp_path: Path, tiny_model_dir: Path, tiny_data_dir: Path) -> None:
    """The real objective on the tiny BERT: a 1-cell grid with repeats = 2 records per-item outputs,
    gold, zero-shot items and overlap; the export averages the two seeds and runs the bootstrap."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _tiny import unique, write_grid_study

    from tuner.cli import main

    name = unique("repeats")
    study_file = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cosent",),
                                  datasets=("stsb",), extra="repeats = 2")
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    assert main(["optimize", "--study", str(study_file), "--storage", url, "--workers", "1"]) == 0
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.params["seed"] for t in trials) == [42, 43]
    items = [decode_items(t.user_attrs["items.test.stsb"]) for t in trials]
    assert items[0][0] == items[1][0] and items[0][1] == items[1][1] is None     # same items, all of them
    gold = decode_items(study.user_attrs["gold.stsb.test"])
    assert gold[0] == items[0][0] == len(items[0][2])
    zero = decode_items(study.user_attrs[f"zero_shot_items.{tiny_model_dir}.stsb.test"])
    assert zero[0] == gold[0]
    assert study.user_attrs["overlap.stsb"]["protocol"] == "seed" and "test" in study.user_attrs["overlap.stsb"]
    rows = study.user_attrs["eval_rows.stsb"]
    assert rows["max_eval_examples"] is None and rows["test"]["rows"] == rows["test"]["of"] == gold[0]
    assert rows["test"]["figure"] == "word_overlap_spearman" and "sample" not in rows["test"]
    out = tmp_path / "export"
    assert main(["export", "--study", name, "--storage", url, "--out", str(out)]) == 0
    meta = json.loads((out / "matrix.json").read_text())
    cell = next(c for c in meta["cells_detail"] if c["loss"] == "cosent")
    assert cell["n_seeds"] == 2 and sorted(cell["seeds"]) == [42, 43] and cell["has_items"] is True
    scores = sorted(t.user_attrs["scores.test.stsb"] for t in trials)
    assert cell["mean"] == pytest.approx(sum(scores) / 2, abs=1e-6)
    assert meta["significance"]["all_tested"] is True and "vs_zero_shot" in cell
    assert "stsb: test" in (out / "results.md").read_text()


def test_error_bars_where_a_cell_has_several_seeds() -> None:
    from tuner.exporter.figures import BUILDERS

    values = np.full((2, 9, 1), np.nan)
    values[:, 0, 0] = [60.0, 50.0]              # zero-shot: one run, no bar
    values[:, 2, 0] = [82.0, 70.0]              # cosent: 3 seeds on model 0, 1 on model 1
    errors = np.full((2, 9, 1), np.nan)
    errors[0, 2, 0] = 2.0
    lab = {"models": ["a", "b"], "losses": ["zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn",
                                            "cosent+angle", "ibn+angle", "cosent+ibn+angle"],
           "datasets": ["stsb"], "metric": "spearman", "split": "test", "protocol": "seed", "study": None,
           "errors": errors}
    fig = BUILDERS["dataset_panels"](values, lab, 100.0)
    bars = [c for ax in fig.axes for c in ax.containers]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    assert [s.tolist() for s in segments] == [[[0.0, 80.0], [0.0, 84.0]]]     # model a, 82 +- 2


def test_score_eval_sets_returns_items_that_match_the_scores(tiny_model_dir: Path, tiny_data_dir: Path) -> None:
    """STS similarities give back the recorded Spearman; classification 0/1 correctness gives back the
    accuracy of the unchanged seed protocol (the refit-per-split path)."""
    from scipy.stats import spearmanr

    from tuner.config import RunConfig
    from tuner.engine._run import prepare_data, score_eval_sets
    from tuner.evaluation import evaluate_classification
    from tuner.models._encoder import load_encoder

    encoder = load_encoder(str(tiny_model_dir), pooling="cls")
    sts = prepare_data(RunConfig(model=str(tiny_model_dir), train=["stsb"], task="sts", protocol="seed",
                                 data_dir=str(tiny_data_dir), batch_size=8))
    scores, details = score_eval_sets(encoder, sts, ("test",), max_seq_length=32)
    item = details["test"]["stsb"]
    assert spearmanr(item["similarities"], item["gold"]).statistic == pytest.approx(scores["test"]["stsb"])
    cls = prepare_data(RunConfig(model=str(tiny_model_dir), train=["mr"], task="classification", protocol="seed",
                                 data_dir=str(tiny_data_dir), batch_size=8))
    scores, details = score_eval_sets(encoder, cls, ("dev", "test"), max_seq_length=32)
    parts = cls.eval[0][1]
    for split in ("dev", "test"):
        correct = details[split]["mr"]["correct"]
        assert set(np.unique(correct)) <= {0, 1} and len(correct) == len(parts[split])
        reference = evaluate_classification(encoder, parts[split], parts["train"], protocol="seed", max_seq_length=32)
        assert float(np.mean(correct)) == pytest.approx(reference["accuracy"]) == scores[split]["mr"]


def test_tpe_trial_scores_by_seed_fill_one_cell_with_mean_std_and_interval() -> None:
    study = optuna.create_study(direction="maximize")
    by_seed = {"42": {"dev": {"stsb": 0.80}, "test": {"stsb": 0.70}},
               "43": {"dev": {"stsb": 0.82}, "test": {"stsb": 0.74}}}
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=0.81,
        user_attrs={"loss": "cosent", "model": MODEL, "scores.dev.stsb": 0.81, "scores.test.stsb": 0.72,
                    "scores_by_seed": by_seed, "overlap.stsb": {"error": "x"}}))
    m = build_matrix(study.get_trials(deepcopy=False), {"overlap.stsb": {"error": "no data"}}, "test")
    cell = (0, 2, 0)
    assert m.values[cell] == pytest.approx(0.72) and m.n_seeds[cell] == 2
    assert m.std[cell] == pytest.approx(0.0282843, abs=1e-7)            # |0.74 - 0.70| / sqrt(2)
    summary = m.seeds[cell]["summary"]                                 # t(0.975, 1) = 12.706205; x 0.02
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((0.465876, 0.974124), abs=2e-6)
    from tuner.exporter.tables import results_markdown

    assert "- stsb: not measured (no data)" in results_markdown(m)


def test_column_replicates_give_paired_bootstraps_result() -> None:
    """The per-column shortcut reproduces tuner.stats.paired_bootstrap for every pair."""
    from tuner.exporter.significance import _from_replicates, spearman_replicates
    from tuner.stats import paired_bootstrap

    gold = GOLD["stsb"]
    items = {0: noisy("stsb", 1.0, 1), 1: noisy("stsb", 1.5, 2), 2: noisy("stsb", 1.5, 2)}
    reps = spearman_replicates(items, gold, 500)
    for a, b in ((0, 1), (1, 0), (1, 2)):
        ours = _from_replicates(items[a], items[b], gold, reps[a], reps[b], 500)
        ref = paired_bootstrap(items[a], items[b], gold, n_resamples=500, seed=0)
        for key in ("difference", "ci_low", "ci_high", "p_a_not_better", "p_two_sided"):
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
