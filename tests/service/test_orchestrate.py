"""tuner.service._orchestrate: input checks before the storage is touched, the study file the workers read,
exit codes, and run_study resuming a complete study (fake-objective workers: no torch)."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from _tiny import start_fake_worker, unique, wait_all, write_grid_study, write_tpe_study
from tuner.service import _orchestrate as orchestrate
from tuner.errors import TunerError
from tuner.study import load_spec, parse_spec


def _status(complete=2, pruned=0, target=2, running=0, waiting=0, codes=()):
    return {"progress": {"complete": complete, "pruned": pruned, "target": target, "running": running,
                         "waiting": waiting}, "worker_exit_codes": list(codes)}


@pytest.mark.parametrize("status, code", [
    (_status(), 0),
    (_status(codes=[0, 0]), 0),
    (_status(complete=1, pruned=1), 0),
    (_status(codes=[0, 130]), 130),  # done, but a worker was stopped: say so
    (_status(complete=1, codes=[130]), 130),
    (_status(complete=1, codes=[1]), 1),  # cells gave up after their retries
    (_status(complete=1, codes=[0]), 1),  # not done although every worker exited 0
    (_status(waiting=1), 1),
])
def test_exit_code(status, code):
    assert orchestrate.exit_code(status) == code


def test_env_seconds(monkeypatch):
    monkeypatch.setenv("TUNER_GRACE_PERIOD", "45")
    assert orchestrate.default_grace_period() == 45
    for bad in ("0", "-3", "ten", ""):
        monkeypatch.setenv("TUNER_GRACE_PERIOD", bad)
        assert orchestrate.default_grace_period() == 30


def test_check_heartbeat():
    orchestrate.check_heartbeat(10, 30)
    with pytest.raises(TunerError, match="--grace-period 10 must be longer than --heartbeat-interval 10"):
        orchestrate.check_heartbeat(10, 10)
    with pytest.raises(TunerError, match="1 second or more"):
        orchestrate.check_heartbeat(0, 30)


def test_study_file_is_the_spec_file_unless_changed(tmp_path, tiny_data_dir, tiny_model_dir):
    path = write_tpe_study(tmp_path, unique("file"), tiny_model_dir, tiny_data_dir, n_trials=4)
    spec = load_spec(path)
    assert orchestrate.study_file(spec) == path
    copy = orchestrate.study_file(spec, n_trials=2, folder=tmp_path / "copy")
    assert copy != path and copy.parent == tmp_path / "copy"
    assert load_spec(copy).n_trials == 2 and load_spec(copy).name == spec.name


def test_study_file_of_a_spec_built_in_python_keeps_data_dir_absolute(tmp_path, tiny_data_dir, tiny_model_dir):
    (tmp_path / "studies").mkdir()
    raw = tomllib.loads(write_tpe_study(tmp_path, "rel", tiny_model_dir, tiny_data_dir).read_text())
    raw["data_dir"] = os.path.relpath(tiny_data_dir, tmp_path / "studies")
    spec_file = tmp_path / "studies" / "rel.toml"
    spec = parse_spec(raw, spec_file)
    written = orchestrate.study_file(spec, n_trials=3, folder=tmp_path / "out")
    data_dir = tomllib.loads(written.read_text())["data_dir"]
    assert Path(data_dir).is_absolute() and Path(data_dir) == (spec_file.parent / raw["data_dir"]).resolve()
    unnamed = parse_spec({**{k: v for k, v in raw.items() if k != "name"}, "data_dir": str(tiny_data_dir)})
    assert orchestrate.study_file(unnamed, folder=tmp_path / "anon").name == f"{unnamed.name}.toml"


def test_check_inputs_names_the_file_and_the_missing_piece(tmp_path, tiny_data_dir, tiny_model_dir, monkeypatch):
    ok = write_grid_study(tmp_path, unique("ok"), tiny_model_dir, tiny_data_dir, datasets=("stsb",))
    orchestrate.check_inputs(load_spec(ok))
    no_data = write_grid_study(tmp_path, unique("nodata"), tiny_model_dir, tiny_data_dir, datasets=("sts13",))
    with pytest.raises(TunerError, match=r"nodata.*dataset 'sts13'"):  # a built-in name, but not in data_dir
        orchestrate.check_inputs(load_spec(no_data))

    def unreachable(source):
        raise TunerError(f"model '{source}' is not in the local cache")

    monkeypatch.setattr("tuner.models._encoder.resolve_model", unreachable)  # e.g. a hub id while offline
    with pytest.raises(TunerError, match=r"ok-.*key 'models': model '.*tiny-bert.*' is not in the local cache"):
        orchestrate.check_inputs(load_spec(ok))


def test_bad_input_fails_before_the_storage_is_created(tmp_path, tiny_data_dir, tiny_model_dir):
    db = tmp_path / "tuner.db"
    bad = write_grid_study(tmp_path, unique("bad"), tiny_model_dir, tiny_data_dir, datasets=("sts13",))
    good = write_grid_study(tmp_path, unique("good"), tiny_model_dir, tiny_data_dir, datasets=("stsb",))
    with pytest.raises(TunerError, match="sts13"):
        orchestrate.run_study(bad, f"sqlite:///{db}")
    with pytest.raises(TunerError, match="grace-period"):
        orchestrate.run_study(good, f"sqlite:///{db}", heartbeat_interval=5, grace_period=5)
    with pytest.raises(TunerError, match="--gpus"):
        orchestrate.run_study(good, f"sqlite:///{db}", gpus="x")
    assert not db.exists()


@pytest.mark.slow
def test_run_study_on_a_complete_study_has_nothing_to_do(tmp_path, tiny_data_dir, tiny_model_dir):
    name = unique("done")
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    path = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                            datasets=("stsb",))
    assert wait_all([start_fake_worker(path, url, 0, sleep=0.01)], timeout=120) == [0]
    lines: list[str] = []
    status = orchestrate.run_study(path, url, log=lines.append)
    assert lines[-1] == "nothing to do: the study is complete" and f"study '{name}'" in lines[0]
    assert status["worker_exit_codes"] == [] and status["grid"]["coverage"] == 1.0
    assert status["counts"]["COMPLETE"] == 2 and orchestrate.exit_code(status) == 0


def test_metric_names_for_the_dashboard(tmp_path, tiny_data_dir, tiny_model_dir):
    tpe = load_spec(write_tpe_study(tmp_path, unique("m"), tiny_model_dir, tiny_data_dir))
    assert tpe.metric_name == "dev spearman (mean over stsb)"
    raw = tomllib.loads(tpe.path.read_text())
    assert parse_spec({**raw, "repeats": 3}).metric_name == "dev spearman (mean over stsb; 3 seeds)"
    grid = load_spec(write_grid_study(tmp_path, unique("g"), tiny_model_dir, tiny_data_dir))
    assert grid.metric_name == "dev spearman (the cell's dataset: stsb, sickr)"
    import optuna

    study = optuna.create_study(direction="maximize")
    lines: list[str] = []
    orchestrate.name_metric(study, tpe, lines.append)
    assert study.metric_names == ["dev spearman (mean over stsb)"] and lines == []
    orchestrate.name_metric(study, tpe, lines.append)  # already named: nothing to do
    assert study.metric_names == ["dev spearman (mean over stsb)"]


def test_progress_line_reads_the_storage(tmp_path, tiny_data_dir, tiny_model_dir):
    import datetime as dt

    from tuner.service._study_service import StudyService
    from tuner.storage import open_storage

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    path = write_grid_study(tmp_path, unique("live"), tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                            datasets=("stsb",))
    assert wait_all([start_fake_worker(path, url, 0, sleep=0.01)], timeout=120) == [0]
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    service = StudyService(load_spec(path), handle)
    handle.close()
    lines: list[str] = []
    live = orchestrate.start_progress(url, service, 2, dt.datetime.now(), lines.append, every_s=3600)
    snap = live.fetch()
    live.stop()
    assert (snap.done, snap.target, snap.workers, snap.eta_s) == (2, 2, 2, 0.0) and snap.best is not None
    assert not live.tty and lines and lines[0].startswith("progress: 2/2 cells | best spearman ")
