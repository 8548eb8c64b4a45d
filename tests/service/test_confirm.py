"""``tuner confirm``: the confirm study's cells, resuming, a changed request, strict JSON, the files
(end to end on a tiny BERT grid study), and the report's statistics on constructed per-item outputs."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from _tiny import unique, write_grid_study

from tuner.errors import TunerError
from tuner.exporter.confirm import confirm_report, holm, paired_over_seeds
from tuner.exporter.items import encode_items, gold_key, items_key
from tuner.service._confirm_plan import ST_EXAMPLE_RECIPE, check_request, top_configs

SEEDS = [1, 2]


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """A 3-cell grid study, run, then confirmed: top 2 x 2 seeds, with both baselines."""
    from tuner.service._confirm import run_confirm
    from tuner.service._orchestrate import quiet_log, run_study

    folder = tmp_path_factory.mktemp("confirm")
    name = unique("parent")
    url = f"sqlite:///{folder / 'c.db'}"
    path = write_grid_study(folder, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent", "cosent+ibn"),
                            datasets=("stsb",))
    status = run_study(path, url, artifacts=False, progress=False, log=quiet_log)
    assert status["progress"]["complete"] == 3
    lines: list[str] = []
    report = run_confirm(name, url, top=2, seeds=SEEDS, out=folder / "out", log=lines.append)
    return SimpleNamespace(name=name, url=url, folder=folder, report=report, lines=lines)


def _trials(name: str, url: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def test_the_confirm_study_holds_one_cell_per_configuration_and_seed(confirmed):
    import optuna

    parent = sorted((t for t in _trials(confirmed.name, confirmed.url)), key=lambda t: (-t.value, t.number))
    top = [f"trial-{t.number}" for t in parent[:2]]
    study = optuna.load_study(study_name=f"{confirmed.name}-confirm", storage=confirmed.url)
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    cells = sorted((t.params["config"], t.params["seed"]) for t in trials)
    assert cells == sorted((label, s) for label in top + ["st-example"] for s in SEEDS)
    assert study.user_attrs["parent_study"] == confirmed.name
    plan = study.user_attrs["confirm"]
    assert [c["label"] for c in plan["configs"]] == top and plan["seeds"] == SEEDS and plan["top"] == 2
    # each cell trains its parent's configuration with the cell's seed, on the full files
    for t in trials:
        config = t.user_attrs["config"]
        assert config["seed"] == t.params["seed"] and config["max_eval_examples"] is None
    st = next(t for t in trials if t.params["config"] == "st-example").user_attrs["config"]
    assert {k: st[k] for k in ("batch_size", "epochs", "lr", "warmup_ratio", "pooling")} == \
        {k: ST_EXAMPLE_RECIPE[k] for k in ("batch_size", "epochs", "lr", "warmup_ratio", "pooling")}
    assert {k: v for k, v in st["weights"].items() if v} == {"cos_mse": 1.0}
    assert [c["label"] for c in confirmed.report["configs"]] != [] and confirmed.report["complete"]


def test_a_second_run_resumes_and_runs_nothing(confirmed):
    from tuner.service._confirm import run_confirm

    before = len(_trials(f"{confirmed.name}-confirm", confirmed.url))
    lines: list[str] = []
    again = run_confirm(confirmed.name, confirmed.url, top=2, seeds=SEEDS, log=lines.append)
    assert len(_trials(f"{confirmed.name}-confirm", confirmed.url)) == before
    assert not any("trial" in line and "COMPLETE" in line for line in lines)
    assert again["configs"] == confirmed.report["configs"]


@pytest.mark.parametrize("change, says", [({"top": 3}, "top=2"), ({"seeds": [1, 2, 3]}, "seeds=[1, 2]"),
                                          ({"budget": {"epochs": 2}}, "budget=")])
def test_a_changed_request_on_the_same_name_is_one_clear_error(confirmed, change, says):
    from tuner.service._confirm import run_confirm

    asked = {"top": 2, "seeds": SEEDS, **change}
    with pytest.raises(TunerError, match=r"was made with .*" + says.replace("[", r"\[").replace("]", r"\]")):
        run_confirm(confirmed.name, confirmed.url, run=False, **asked)


def test_json_is_strict_and_has_the_documented_keys(confirmed, capsys):
    from tuner.cli import main

    code = main(["confirm", "--study", confirmed.name, "--storage", confirmed.url, "--top", "2", "--seeds", "1,2",
                 "--report-only", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert {"configs", "baselines", "winner", "budget"} <= set(report)
    for entry in report["configs"] + report["baselines"]:
        assert {"label", "params", "seeds", "dev", "test"} <= set(entry)
        assert {"mean", "std", "ci"} == set(entry["test"])
    assert [b["label"] for b in report["baselines"]] == ["st-example", "zero-shot"]
    for entry in report["configs"]:   # what a cell cost, from the trials' own records
        assert entry["cost"]["cells"] == 2 and entry["cost"]["cpu_s_per_cell"] > 0 and entry["cost"]["wall_s_per_cell"] > 0
    assert report["budget"]["seeds"] == SEEDS and report["budget"]["max_train_examples"] is None


def test_the_export_writes_table_plot_and_report(confirmed):
    out = confirmed.folder / "out"
    for name in ("confirm.json", "confirm.csv", "confirm.md", "plots/confirm.png", "plots/confirm.svg"):
        assert (out / name).is_file(), name
    assert json.loads((out / "confirm.json").read_text())["parent"] == confirmed.name
    # best_finetune.json only for a winner
    assert (out / "best_finetune.json").is_file() == (confirmed.report["winner"] is not None)


def test_bad_requests_fail_before_anything_opens(tmp_path):
    with pytest.raises(TunerError, match="names a seed twice"):
        check_request(2, [1, 1], None, ())
    with pytest.raises(TunerError, match="unknown baseline 'bm25'"):
        check_request(2, [1], None, ("bm25",))
    with pytest.raises(TunerError, match="--max-eval-examples"):
        check_request(2, [1], {"max_eval_examples": 3}, ())


# ---------------------------------------------------------------- the statistics, on constructed outputs

def _trial(number, label, seed, values, gold, dev):
    return SimpleNamespace(number=number, params={"config": label, "model": "m", "seed": seed},
                           state=SimpleNamespace(name="COMPLETE"), value=dev, values=None,
                           user_attrs={"scores.test.stsb": float(np.corrcoef(values, gold)[0, 1]),
                                       items_key("test", "stsb"): encode_items(values, "similarity")})


def _plan(labels):
    return {"parent": "p", "metric": "spearman", "datasets": ["stsb"], "seeds": SEEDS, "baselines": [],
            "budget": {}, "trained_baselines": [],
            "configs": [{"label": lab, "model": "m", "params": {}, "parent_trials": [i], "parent_dev": 0.5 - i / 10}
                        for i, lab in enumerate(labels)]}


def _report(systems, gold):
    """systems: label -> (dev, per-seed item outputs)."""
    trials = [_trial(i, label, seed, items[j], gold, dev)
              for i, (label, (dev, items)) in enumerate(systems.items()) for j, seed in enumerate(SEEDS)]
    attrs = {gold_key("stsb", "test"): encode_items(gold, "gold")}
    return confirm_report(_plan(list(systems)), trials, attrs, n_resamples=500)


def test_a_tie_has_no_winner_and_names_the_tied_configurations():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 200)
    same = [gold + rng.normal(0, 2, 200) for _ in SEEDS]
    report = _report({"a": (0.7, same), "b": (0.6, same)}, gold)
    assert report["winner"] is None and report["tie"] == ["a", "b"]
    assert report["comparisons"][0]["difference"] == 0.0 and not report["comparisons"][0]["significant"]


def test_a_clearly_better_configuration_wins():
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 200)
    good = [gold + rng.normal(0, 0.5, 200) for _ in SEEDS]
    poor = [gold + rng.normal(0, 4, 200) for _ in SEEDS]
    report = _report({"good": (0.8, good), "poor": (0.6, poor)}, gold)
    assert report["winner"] == "good" and report["tie"] == ["good"]
    versus = report["comparisons"][0]
    assert versus["difference"] > 0.2 and versus["ci"][0] > 0 and versus["p_holm"] < 0.05


def test_one_configuration_is_neither_called_a_winner_nor_a_tie():
    """``--top 1``: nothing to compare with, so the reports do not claim it beat anything."""
    from tuner.exporter.confirm import format_report
    from tuner.exporter.confirm_files import confirm_markdown

    rng = np.random.default_rng(4)
    gold = rng.uniform(0, 5, 200)
    report = _report({"only": (0.8, [gold + rng.normal(0, 1, 200) for _ in SEEDS])}, gold)
    assert report["winner"] == "only" and report["comparisons"] == []
    for text in (format_report(report), confirm_markdown(report)):
        assert "One configuration" in text and "neither a winner nor a tie" in text
        assert "significantly better" not in text


def test_the_best_is_chosen_by_dev_and_must_beat_every_other_on_test():
    rng = np.random.default_rng(2)
    gold = rng.uniform(0, 5, 200)
    good = [gold + rng.normal(0, 0.5, 200) for _ in SEEDS]
    poor = [gold + rng.normal(0, 4, 200) for _ in SEEDS]
    # 'poor' has the higher dev value, so it is the best by selection, and it is not better on test
    report = _report({"poor": (0.9, poor), "good": (0.6, good)}, gold)
    assert report["configs"][0]["label"] == "poor" and report["winner"] is None


def test_seed_noise_widens_the_interval():
    """Per-seed differences that flip sign make the two-stage bootstrap's interval cover 0."""
    rng = np.random.default_rng(3)
    gold = rng.uniform(0, 5, 300)
    noise = [rng.normal(0, s, 300) for s in (0.5, 4.0)]
    a = {1: {"stsb": gold + noise[0]}, 2: {"stsb": gold + noise[1]}}
    b = {1: {"stsb": gold + noise[1]}, 2: {"stsb": gold + noise[0]}}
    result = paired_over_seeds(a, b, {"stsb": gold}, "spearman", n_resamples=500)
    assert result["ci"][0] < 0 < result["ci"][1] and result["seeds"] == 2


def test_systems_of_two_confirm_studies_compare_on_the_same_test_items():
    """scripts/cross_confirm.py: A of one study against B of another, paired over seeds x items."""
    from tuner.exporter.confirm import compare_across

    rng = np.random.default_rng(4)
    gold = rng.uniform(0, 5, 200)
    attrs = {gold_key("stsb", "test"): encode_items(gold, "gold")}
    good = [_trial(i, "trial-1", s, gold + rng.normal(0, 0.5, 200), gold, 0.8) for i, s in enumerate(SEEDS)]
    poor = [_trial(i, "trial-7", s, gold + rng.normal(0, 4, 200), gold, 0.7) for i, s in enumerate(SEEDS)]
    result = compare_across((good, attrs, "trial-1"), (poor, attrs, "trial-7"), ["stsb"], n_resamples=500)
    assert result["a"]["label"] == "trial-1" and result["a"]["seeds"] == SEEDS
    assert result["comparison"]["difference"] > 0.2 and result["comparison"]["ci"][0] > 0
    other = {gold_key("stsb", "test"): encode_items(gold[::-1], "gold")}
    with pytest.raises(ValueError, match="different stsb test items"):
        compare_across((good, attrs, "trial-1"), (poor, other, "trial-7"), ["stsb"])
    with pytest.raises(ValueError, match="no COMPLETE cell of 'trial-9'"):
        compare_across((good, attrs, "trial-9"), (poor, attrs, "trial-7"), ["stsb"])


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06], abs=1e-12)


def test_top_configs_joins_seeds_of_one_configuration_and_refuses_mixed_datasets():
    from tuner.config import RunConfig

    def t(number, value, seed, dataset="stsb", lr=2e-5):
        config = RunConfig(train=[dataset], lr=lr, seed=seed).to_dict()
        return SimpleNamespace(number=number, value=value, values=None, params={"seed": seed, "dataset": dataset},
                               user_attrs={"config": config, "scores.dev.x": value, "eval_datasets": [dataset]})

    trials = [t(0, 0.5, 1), t(1, 0.7, 2), t(2, 0.65, 1, lr=3e-5)]
    chosen = top_configs(trials, 2, "p")
    assert [g["trials"] for g in chosen] == [[2], [0, 1]]   # 0.65 beats the mean 0.6 of trials 0 and 1
    with pytest.raises(TunerError, match="distinct complete configuration"):
        top_configs(trials, 3, "p")
    mixed = trials + [t(3, 0.9, 1, dataset="sickr")]
    with pytest.raises(TunerError, match="--dataset NAME"):
        top_configs(mixed, 2, "p")
    assert [g["trials"] for g in top_configs(mixed, 1, "p", dataset="sickr")] == [[3]]


def test_status_reads_a_confirm_study_by_its_name(confirmed, capsys):
    """A confirm study has no study file: status rebuilds its grid from the recorded plan."""
    from tuner.cli import main

    assert main(["status", "--study", f"{confirmed.name}-confirm", "--storage", confirmed.url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["sampler"] == "grid" and status["file"] == f"confirm of '{confirmed.name}'"
    cells = len(_trials(f"{confirmed.name}-confirm", confirmed.url))
    assert status["grid"]["cells"] == cells and status["grid"]["complete"] == cells


def test_a_partial_confirmation_says_so_and_gives_no_verdict(confirmed):
    from tuner.exporter.confirm import format_report
    from tuner.exporter.confirm_files import confirm_markdown

    cells = confirmed.report["cells"]
    assert cells["complete"] == cells["total"] == len(_trials(f"{confirmed.name}-confirm", confirmed.url))
    partial = {**confirmed.report, "complete": False, "cells": {"complete": 2, "total": cells["total"]},
               "winner": None}
    text = format_report(partial)
    assert text.splitlines()[0] == f"partial: 2 of {cells['total']} cells complete; run the same command to resume"
    assert text.splitlines()[-2] == "no verdict yet: not every cell has run" and "a tie" not in text
    md = confirm_markdown(partial)
    assert f"**Partial**: 2 of {cells['total']} cells complete" in md and "No verdict yet" in md
    assert "partial" not in format_report(confirmed.report)


def test_confirm_on_another_dataset_trains_and_scores_there(confirmed):
    """``--on sickr``: the searched configuration, trained on SICK-R's train split and scored on its
    dev/test, in a study of its own; a dataset of another task is one clear line."""
    import optuna

    from tuner.service._confirm import run_confirm

    report = run_confirm(confirmed.name, confirmed.url, top=1, seeds=[1], baselines=["zero-shot"], on="sickr",
                         log=lambda line: None)
    study = optuna.load_study(study_name=f"{confirmed.name}-confirm-on-sickr", storage=confirmed.url)
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.user_attrs["config"]["train"] == ["sickr"] and trial.user_attrs["config"]["eval"] == ["sickr"]
    assert "scores.test.sickr" in trial.user_attrs and "scores.test.stsb" not in trial.user_attrs
    assert report["on"] == "sickr" and report["datasets"] == ["sickr"]
    assert report["configs"][0]["test"]["mean"] is not None and report["baselines"][0]["test"]["mean"] is not None
    with pytest.raises(TunerError, match="--on mr: it holds classification data"):
        run_confirm(confirmed.name, confirmed.url, top=1, seeds=[1], on="mr", study_name="other", run=False)
    with pytest.raises(TunerError, match="--on nope: unknown dataset 'nope'"):
        run_confirm(confirmed.name, confirmed.url, top=1, seeds=[1], on="nope", study_name="other", run=False)


def test_confirm_with_another_model_trains_from_it(confirmed, tiny_model_dir, tmp_path):
    """``--model``: the searched configuration trained from another model (here a second tiny BERT)."""
    import shutil

    import optuna

    from tuner.service._confirm import run_confirm

    other = shutil.copytree(tiny_model_dir, tmp_path / "other-bert")
    report = run_confirm(confirmed.name, confirmed.url, top=1, seeds=[1], baselines=["zero-shot"], model=str(other),
                         log=lambda line: None)
    study = optuna.load_study(study_name=f"{confirmed.name}-confirm-with-other-bert", storage=confirmed.url)
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.user_attrs["config"]["model"] == str(other) and trial.params["model"] == str(other)
    assert report["model"] == str(other) and [b["label"] for b in report["baselines"]] == ["zero-shot"]
    assert report["baselines"][0]["test"]["mean"] is not None and report["configs"][0]["test"]["mean"] is not None


def test_cross_confirm_script_compares_one_system_with_several_holm_adjusted(confirmed, capsys):
    """scripts/cross_confirm.py end to end on the confirm study: A against two systems, Holm over both."""
    import sys

    from _tiny import REPO

    sys.path.insert(0, str(REPO / "scripts"))
    import cross_confirm

    study = f"{confirmed.name}-confirm"
    first, second = (c["label"] for c in confirmed.report["configs"])
    out = confirmed.folder / "cross" / "first-vs"
    code = cross_confirm.main(["--dataset", "stsb", "--a", confirmed.url, study, first,
                               "--b", confirmed.url, study, second, "--b", confirmed.url, study, "st-example",
                               "--out", str(out)])
    assert code == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["a"]["label"] == first and [e["b"]["label"] for e in record["against"]] == [second, "st-example"]
    tested = [e["comparison"] for e in record["against"]]
    assert all(c["p_holm"] >= c["p"] for c in tested) and max(c["p_holm"] for c in tested) <= 1.0
    text = out.with_suffix(".md").read_text()
    assert "| B2 |" in text and "Holm over the 2 comparisons" in text
    assert cross_confirm.main(["--dataset", "stsb", "--a", confirmed.url, study, "trial-999",
                               "--b", confirmed.url, study, second, "--out", str(out)]) == 2
    assert "no COMPLETE cell of 'trial-999'" in capsys.readouterr().err


def test_a_bootstrap_p_of_zero_is_shown_as_its_bound():
    from tuner.exporter.confirm import format_p

    assert format_p(0.0311, 2000) == "0.0311"
    assert format_p(0.0, 2000) == "< 0.001"           # two-sided: 2 / B
    assert format_p(0.0, 2000, family=5) == "< 0.005"  # Holm over 5 comparisons multiplies the bound
