"""tuner.service._status: the status dict of a study in its storage, and its text form."""
from __future__ import annotations

import pytest

from _tiny import start_fake_worker, unique, wait_all, write_grid_study
from tuner.errors import TunerError
from tuner.service._study_service import StudyService
from tuner.storage import open_storage
from tuner.study import load_spec
from tuner.service._status import collect_status, format_status, read_status

GRID = {
    "study": "g", "file": "g.toml", "storage": "sqlite:///x.db", "task": "sts", "metric": "spearman",
    "sampler": "grid", "protocol": "seed", "counts": {"COMPLETE": 1, "RUNNING": 1, "WAITING": 0, "FAIL": 0},
    "trials": 2,
    "progress": {"target": 3, "complete": 1, "pruned": 0, "running": 1, "waiting": 0, "failed": 0, "duplicates": 0,
                 "gave_up": [{"loss": "ibn"}]},
    "best": {"number": 0, "value": 0.81234, "params": {"loss": "cosent"}, "scores": {}},
    "running": [{"number": 1, "worker": "host:12", "age_s": 3.2, "params": {"loss": "angle"}}],
    "zero_shot": {},
    "grid": {"cells": 3, "complete": 1, "coverage": 0.3333, "duplicates": 0, "missing": [{"loss": "angle"}]},
}


def test_format_status_grid():
    text = format_status(GRID)
    assert text.splitlines()[0] == "study g (g.toml) on sqlite:///x.db"
    assert "trials: COMPLETE 1, RUNNING 1" in text
    assert "grid: 1/3 cells complete (33%), 1 running, 0 queued, 1 gave up, duplicates 0" in text
    assert 'best: trial 0 spearman 0.8123 params {"loss": "cosent"}' in text
    assert "  trial 1     worker host:12" in text and "age 3s" in text
    assert 'gave up (failed max_retries+1 times): {"loss": "ibn"}' in text


def test_format_status_tpe_without_trials():
    st = {**GRID, "sampler": "tpe", "counts": {"COMPLETE": 0}, "best": None, "running": [],
          "progress": {**GRID["progress"], "complete": 0, "running": 0, "gave_up": []}}
    del st["grid"]
    text = format_status(st)
    assert "trials: no trials yet" in text and "best: no complete trial yet" in text
    assert "progress: 0/3 trials finished (0 complete, 0 pruned), 0 running, 0 failed" in text
    assert "running:" not in text and "gave up" not in text


def test_read_status_counts_and_best(tmp_path, tiny_data_dir):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("st")
    path = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent"), datasets=("stsb",),
                            models=["m"])
    with pytest.raises(TunerError, match="does not exist"):
        read_status(path, url)
    assert wait_all([start_fake_worker(path, url, 0, sleep=0.01)], timeout=120) == [0]
    st = read_status(path, url)
    assert st["counts"]["COMPLETE"] == 2 and st["grid"]["coverage"] == 1.0 and st["grid"]["missing"] == []
    assert st["best"] is not None and st["running"] == [] and st["progress"]["target"] == 2
    timing = st["timing"]  # the numbers of optimize's progress line; the clock stops at the last trial
    assert (timing["done"], timing["target"], timing["eta_s"], timing["best"]) == (2, 2, 0.0, st["best"]["value"])
    assert timing["elapsed_s"] >= 0 and timing["mean_trial_s"] is not None and timing["workers"] == 1
    assert "time: 2/2 finished" in format_status(st) and format_status(st).count("done") >= 1
    with pytest.raises(TunerError, match=f"no study 'other'.*it has: .*{name}"):
        read_status(load_spec(path), url, study_name="other")
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        assert collect_status(StudyService(load_spec(path), handle)) == st
    finally:
        handle.close()
