"""Tuner's storage behaves like Optuna's ``RDBStorage`` where Optuna users rely on it (issue #15, part 4):
it pickles and works in another process, bad heartbeat settings are ``ValueError`` (and one-line
``TunerError``), ``sqlite:///:memory:`` works, and Optuna's heartbeat ExperimentalWarning is
silenced only where tuner raises it."""
from __future__ import annotations

import multiprocessing
import pickle
import warnings

import pytest

from _tiny import unique, write_grid_study
from tuner.errors import TunerError
from tuner.storage import open_storage


def _optimize_in_child(storage, name: str, n: int) -> int:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return len(study.trials)


def test_storage_pickles_and_runs_trials_in_other_processes(tmp_path):
    import optuna

    handle = open_storage(f"sqlite:///{tmp_path / 'p.db'}", heartbeat_interval=None, grace_period=None)
    try:
        name = unique("pickle")
        optuna.create_study(study_name=name, storage=handle.storage)
        copy = pickle.loads(pickle.dumps(handle.storage))
        assert type(copy) is type(handle.storage)
        assert [s.study_name for s in copy.get_all_studies()] == [name]
        with multiprocessing.get_context("spawn").Pool(2) as pool:  # what joblib/Dask/Ray do with a storage
            pool.starmap(_optimize_in_child, [(handle.storage, name, 3), (handle.storage, name, 3)])
        trials = handle.storage.get_all_trials(handle.storage.get_study_id_from_name(name))
        assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
        assert len({t.number for t in trials}) == 6
    finally:
        handle.close()


@pytest.mark.parametrize("interval,grace,fragment", [
    (0, 30, "heartbeat interval is 0"),
    (-5, None, "heartbeat interval is -5"),
    (10, 10, "grace period 10s must be longer than the heartbeat interval 10s"),
    (10, 5, "grace period 5s must be longer"),
    (None, 0, "grace period is 0"),
])
def test_bad_heartbeat_settings_are_value_errors_and_one_line_tuner_errors(tmp_path, interval, grace, fragment):
    with pytest.raises(ValueError) as info:
        open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=interval, grace_period=grace)
    assert isinstance(info.value, TunerError)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "h.db").exists()  # checked before anything is created


def test_sqlite_in_memory_runs_a_study_with_heartbeats_and_the_service(tiny_data_dir, tmp_path):
    """The in-memory database used to fail with "cannot start a transaction within a transaction"."""
    import optuna

    from tuner.service._study_service import StudyService
    from tuner.study import load_spec

    handle = open_storage("sqlite:///:memory:", heartbeat_interval=1, grace_period=3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # optuna: heartbeat is "meant for optimize()"
            study = optuna.create_study(storage=handle.storage, study_name="plain")
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5, n_jobs=2)
        assert len(study.trials) == 5 and all(t.state.name == "COMPLETE" for t in study.trials)

        name = unique("mem")
        spec = load_spec(write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent", "ibn"),
                                          datasets=("stsb",), models=["fake"]))
        service = StudyService(spec, handle)
        service.prepare()

        def objective(trial, choice):
            import time

            time.sleep(1.2)  # at least one heartbeat from the worker's heartbeat thread
            trial.set_user_attr(f"scores.dev.{choice.train[0]}", 0.5)
            return 0.5

        assert service.run_worker(objective, log=lambda s: None) == 0
        trials = handle.storage.get_all_trials(handle.storage.get_study_id_from_name(name))
        assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 3
    finally:
        handle.close()


def test_heartbeat_experimental_warning_is_silenced_only_where_raised(tmp_path):
    import optuna

    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        handle = open_storage(f"sqlite:///{tmp_path / 'w.db'}", heartbeat_interval=1, grace_period=3)
        handle.close()
        warnings.warn("a warning of the caller's own", UserWarning)
        with pytest.warns(optuna.exceptions.ExperimentalWarning, match="heartbeat_interval"):
            optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'w2.db'}", heartbeat_interval=1)
    assert [str(w.message) for w in seen] == ["a warning of the caller's own"]  # none from open_storage
    assert warnings.filters == before  # no global filter left behind


def test_sqlite_in_memory_is_refused_in_one_line_where_processes_must_share_it(tmp_path):
    import subprocess
    import sys

    from _tiny import env_with_repo

    study = write_grid_study(tmp_path, unique("memcli"), None, tmp_path, losses=("cos_mse",), datasets=("stsb",),
                             models=["fake"])
    result = subprocess.run([sys.executable, "-m", "tuner", "optimize", "--study", str(study), "--storage",
                             "sqlite:///:memory:"], cwd=tmp_path, env=env_with_repo(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "lives inside one process" in lines[0] and "sqlite:///FILE.db" in lines[0], lines
