"""bench/hpo_efficiency.py (issue #16): the anytime bookkeeping on hand-made trials, and a tiny
end-to-end run (tiny BERT, tiny data) of a warm start and the grid through real studies."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import optuna
import pytest

from _tiny import REPO, env_with_repo

sys.path.insert(0, str(REPO / "bench"))
import hpo_efficiency as hpo  # noqa: E402

T0 = dt.datetime(2026, 1, 1)


def _frozen(number, finished_s, cpu_s, value, state, test):
    t = optuna.trial.create_trial(state=getattr(optuna.trial.TrialState, state), value=value,
                                  user_attrs={"cpu_s": cpu_s, "scores.test.stsb": test})
    t.number = number
    t.datetime_complete = T0 + dt.timedelta(seconds=finished_s)
    return t


def test_trajectory_follows_finish_order_and_charges_pruned_trials():
    trials = [_frozen(0, 30, 10.0, 0.70, "COMPLETE", 0.60),   # finishes last
              _frozen(1, 10, 5.0, 0.80, "COMPLETE", 0.75),
              _frozen(2, 20, 2.0, None, "PRUNED", None)]
    traj = hpo.trajectory(trials)
    assert [s["trial"] for s in traj] == [1, 2, 0]
    assert [s["cpu_s"] for s in traj] == [5.0, 7.0, 17.0]
    assert [s["best_dev"] for s in traj] == [0.80, 0.80, 0.80]   # 0.70 later does not replace it
    assert traj[-1]["best_test"] == 0.75
    assert hpo.compute_to(traj, 0.79) == 5.0 and hpo.compute_to(traj, 0.81) is None


def test_summary_fractions_of_the_grid_and_warm_start_offsets():
    grid = [{"cpu_s": 50.0, "best_dev": 0.80, "best_test": 0.7}, {"cpu_s": 100.0, "best_dev": 0.83, "best_test": 0.8}]
    fast = [{"cpu_s": 20.0, "best_dev": 0.849, "best_test": 0.79}, {"cpu_s": 40.0, "best_dev": 0.85, "best_test": 0.8}]
    slow = [{"cpu_s": 30.0, "best_dev": 0.80, "best_test": 0.7}]
    runs = {"grid": {42: grid}, "tpe": {0: fast, 1: slow}, "warm": {0: fast}}
    summary = hpo.summarise(runs, gap=0.002, offsets={"warm": {0: 30.0}})
    assert summary["best_dev"] == 0.85 and summary["grid_cpu_s"] == 100.0 and summary["grid_best_dev"] == 0.83
    assert summary["targets"] == {"best": pytest.approx(0.848), "grid": pytest.approx(0.828)}
    tpe = summary["rows"]["tpe"]
    assert tpe["runs"] == 2 and tpe["reached_best"] == 1 and tpe["reached_grid"] == 1
    assert tpe["fraction_to_best"]["mean"] == pytest.approx(0.20)
    assert tpe["final_dev"]["mean"] == pytest.approx((0.85 + 0.80) / 2)
    assert summary["rows"]["warm"]["fraction_to_best"]["mean"] == pytest.approx(0.50)   # 20 + 30 of the quick study
    assert summary["rows"]["grid"]["reached_best"] == 0                                   # 0.83 < 0.848
    assert summary["rows"]["grid"]["fraction_to_grid"]["mean"] == pytest.approx(1.0)      # its best came last
    assert "| tpe | 2 | 1 | 20% | 1 | 20% |" in hpo.markdown(summary, None)


def test_strategies_are_compared_with_random_search_over_runs_with_holm():
    def run(dev, test):
        return [{"cpu_s": 1.0, "best_dev": dev, "best_test": test}]

    runs = {"random": {0: run(0.80, 0.70), 1: run(0.81, 0.71), 2: run(0.79, 0.69)},
            "better": {0: run(0.90, 0.70), 1: run(0.91, 0.72), 2: run(0.89, 0.68)},
            "same": {0: run(0.80, 0.70), 1: run(0.82, 0.71), 2: run(0.78, 0.69)},
            "grid": {0: run(0.95, 0.75)}}
    runs["better+quick"] = runs["better"]
    out = hpo.versus(runs)
    assert set(out) == {"better", "same"}            # not the baseline, the one-run grid, or a +quick copy
    dev = out["better"]["dev"]
    assert dev["diff"] == pytest.approx(0.10) and dev["ci"][0] > 0 and dev["p_holm"] < 0.05
    assert dev["p_holm"] == pytest.approx(min(1.0, 2 * dev["p"]))   # the smaller of two p-values, times 2
    assert out["same"]["dev"]["ci"][0] < 0 < out["same"]["dev"]["ci"][1] and out["same"]["dev"]["p_holm"] == 1.0
    assert out["better"]["test"]["diff"] == pytest.approx(0.0) and out["better"]["test"]["p"] > 0.5
    assert hpo.versus({"random": {0: run(0.8, 0.7)}, "better": runs["better"]}) == {}   # one baseline run: no test


def test_merge_keeps_recorded_runs_the_storage_lacks_and_refuses_other_budgets(tmp_path):
    import argparse

    args = argparse.Namespace(**{k: 1 for k in hpo.BUDGET_KEYS})
    step = {"cpu_s": 1.0, "best_dev": 0.8, "best_test": 0.7}
    recorded = {"settings": dict(vars(args)), "offsets": {"tpe-mv-warm+quick": {"0": 5.0}},
                "runs": {"grid": {"42": [step]}, "tpe": {"0": [step], "1": [step]}, "tpe-mv-warm": {"0": [step]}}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(recorded))
    new = {"cpu_s": 2.0, "best_dev": 0.9, "best_test": 0.8}
    runs, offsets = {"tpe": {2: [new], 1: [new]}}, {}
    hpo.merge_recorded(runs, offsets, path, args)
    assert list(runs["tpe"]) == [0, 1, 2]                  # sorted by seed
    assert runs["tpe"][1] == [new]                         # the storage's run wins over the file's
    assert runs["grid"] == {42: [step]} and offsets == {"tpe-mv-warm+quick": {0: 5.0}}
    assert runs["tpe-mv-warm+quick"] is runs["tpe-mv-warm"]
    args.train_pairs = 2
    with pytest.raises(ValueError, match="train_pairs=1"):
        hpo.merge_recorded({}, {}, path, args)


def test_studies_search_the_same_space_with_different_samplers_and_pruners():
    args = hpo.main.__globals__["argparse"].Namespace(
        model="m", n_trials=5, train_pairs=16, eval_pairs=16, batch_size=8, lr=5e-5, data_dir=None, prefix="p",
        pruner_startup=2, eval_every=1, quick_pairs=8, quick_trials=2, warm_k=1, grid_losses=None)
    from tuner import parse_spec

    specs = {s: [parse_spec({**d, "name": n}) for n, d in hpo.study_dicts(s, 1, args)] for s in hpo.STRATEGIES}
    assert specs["grid"][0].n_cells == 30                        # 15 combinations x 2 poolings
    assert specs["random"][0].sampler == "random"
    uni = specs["tpe"][0].build_sampler()
    assert not uni._multivariate and uni._constant_liar
    assert specs["tpe-mv"][0].build_sampler()._multivariate
    assert specs["tpe-mv-median"][0].pruner.type == "median"
    assert isinstance(specs["tpe-mv-hyperband"][0].pruner.build(), optuna.pruners.HyperbandPruner)
    quick, warm = specs["tpe-mv-warm"]
    assert quick.base.max_train_examples == 8 and warm.warm_start.study == quick.name
    spaces = {json.dumps(s[-1].search.describe(), sort_keys=True, default=str) for k, s in specs.items() if k != "grid"}
    assert len(spaces) == 1
    # independent runs: every (strategy, run) has its own sampler seed, also where strategies share a sampler
    seeds = [hpo.sampler_seed(s, r) for s in hpo.STRATEGIES if s != "grid" for r in range(5)]
    assert len(set(seeds)) == len(seeds)
    assert specs["tpe-mv"][0].seed != specs["tpe-mv-median"][0].seed
    assert specs["tpe-mv"][0].seed == hpo.sampler_seed("tpe-mv", 1)


def test_the_noise_study_reruns_the_grids_best_cell_with_other_training_seeds():
    from types import SimpleNamespace

    from tuner import parse_spec

    args = hpo.main.__globals__["argparse"].Namespace(
        model="m", n_trials=5, train_pairs=16, eval_pairs=None, batch_size=8, lr=5e-5, data_dir=None, prefix="p",
        pruner_startup=2, eval_every=1, quick_pairs=8, quick_trials=2, warm_k=1, grid_losses=None, noise_seeds=4)
    best = SimpleNamespace(params={"loss": "cosent+ibn", "pooling": "avg", "model": "m", "dataset": "stsb"})
    name, study = hpo.noise_study(best, args)
    spec = parse_spec({**study, "name": name})
    assert spec.losses == ["cosent+ibn"] and spec.n_cells == 4
    assert [c["seed"] for c in spec.cells()] == [43, 44, 45, 46]          # the grid itself trained with 42
    assert spec.base.max_eval_examples is None                           # the full dev and test files


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_table_json_and_plot(tmp_path, tiny_model_dir, tiny_data_dir):
    out = tmp_path / "hpo"
    cmd = [sys.executable, str(REPO / "bench" / "hpo_efficiency.py"), "--strategies", "tpe-mv-warm,grid",
           "--runs", "0", "--n-trials", "2", "--noise-seeds", "2", "--workers", "1", "--storage", f"sqlite:///{tmp_path / 'h.db'}",
           "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--train-pairs", "16",
           "--eval-pairs", "16", "--batch-size", "4", "--eval-every", "1", "--quick-pairs", "8", "--quick-trials", "2",
           "--warm-k", "1", "--grid-losses", "cosent,ibn", "--out", str(out)]
    result = subprocess.run(cmd, cwd=tmp_path, env=env_with_repo(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.with_suffix(".json").read_text())
    rows = record["summary"]["rows"]
    assert set(rows) == {"tpe-mv-warm", "tpe-mv-warm+quick", "grid"}
    assert record["summary"]["grid_cpu_s"] > 0 and len(record["runs"]["grid"]["0"]) == 4
    noise = record["summary"]["noise"]                                   # the seed noise sets the target gap
    assert noise["seeds"] == [43, 44] and len(noise["dev"]) == 2
    assert record["summary"]["gap"] == pytest.approx(noise["std"])
    assert "seed noise" in out.with_suffix(".md").read_text()
    assert rows["grid"]["reached_grid"] == 1 and rows["grid"]["fraction_to_grid"]["max"] <= 1.0
    assert rows["tpe-mv-warm+quick"]["total_cpu_s"]["mean"] > rows["tpe-mv-warm"]["total_cpu_s"]["mean"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "| grid | " in out.with_suffix(".md").read_text()


def test_drop_items_keeps_everything_the_benchmark_reads(tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.8, user_attrs={
        "cpu_s": 3.5, "scores.test.stsb": 0.7, "items.test.stsb": {"values": list(range(2000))}}))
    study.set_user_attr("zero_shot_items.m.stsb.dev", {"values": list(range(2000))})
    study.set_user_attr("gold.stsb.dev", {"values": list(range(2000))})
    study.set_user_attr("zero_shot.m.stsb.dev", 0.8)
    assert hpo.drop_items(url) == 3
    loaded = optuna.load_study(study_name="s", storage=url)
    (trial,) = loaded.trials
    assert trial.value == 0.8 and trial.user_attrs == {"cpu_s": 3.5, "scores.test.stsb": 0.7}
    assert loaded.user_attrs == {"zero_shot.m.stsb.dev": 0.8}
    with pytest.raises(ValueError, match="SQLite"):
        hpo.drop_items("postgresql://postgres@127.0.0.1:5432/test")


def test_an_interrupted_study_stops_the_benchmark(monkeypatch):
    """A grid stopped by Ctrl-C/SIGTERM must not go on to pick the noise cell from a partial grid."""
    import tuner
    from tuner.service import _orchestrate

    monkeypatch.setattr(tuner, "parse_spec", lambda study: study)
    status = {"counts": {"COMPLETE": 22, "FAIL": 2}, "wall_s": 588.0, "worker_exit_codes": [130, 130],
              "progress": {"complete": 22, "pruned": 0, "target": 30, "running": 0, "waiting": 6}}
    monkeypatch.setattr(_orchestrate, "run_study", lambda *a, **k: status)
    args = hpo.main.__globals__["argparse"].Namespace(storage="sqlite://", workers=2)
    with pytest.raises(SystemExit) as stopped:
        hpo.run_study("hpo-grid", {"name": "hpo-grid", "task": "sts"}, args)
    assert stopped.value.code == 130
