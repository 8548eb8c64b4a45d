"""The study service on SQLite: exactly-once grid cells with several worker processes, resume,
a SIGKILLed worker's cell re-run after its heartbeat stops, Ctrl-C marking the trial failed,
bounded retries, TPE with several workers.

The multi-process tests (marked ``slow``) drive the real service loop
(:class:`tuner.service._study_service.StudyService`) in worker processes with a fake objective that only sleeps
(tests/_tiny.py), so they take seconds each; the ``test_optimize_cli_*`` ones run
``python -m tuner optimize`` end to end on the tiny random-init BERT.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _tiny import (env_with_repo, poll, start_fake_worker, toml_dump, unique, wait_all, write_grid_study,
                   write_tpe_study)
from tuner.service._study_service import StudyService
from tuner.storage import open_storage
from tuner.study import cell_key, load_spec

REPO_ROOT = Path(__file__).resolve().parents[2]

ALL_ROWS = ("cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle", "cosent+ibn+angle")


def trials_of(url: str, name: str) -> list:
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        study_id = handle.storage.get_study_id_from_name(name)
        return handle.storage.get_all_trials(study_id)
    finally:
        handle.close()


def cell_counts(trials, state: str = "COMPLETE") -> Counter:
    return Counter(cell_key(t.params) for t in trials if t.state.name == state)


def wait_until(predicate, timeout: float, interval: float = 0.1):
    value = poll(predicate, timeout, interval)
    if value:
        return value
    raise AssertionError(f"condition not met within {timeout}s")


def wait_for_running_trial(url: str, name: str, timeout: float, interval: float = 0.1):
    """The first RUNNING trial of study ``name`` that a worker has claimed (``worker`` attr)."""
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        def running():
            try:
                sid = handle.storage.get_study_id_from_name(name)
            except KeyError:
                return None
            return next((t for t in handle.storage.get_all_trials(sid)
                         if t.state.name == "RUNNING" and "worker" in t.user_attrs), None)

        return wait_until(running, timeout=timeout, interval=interval)
    finally:
        handle.close()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'tuner.db'}"


@pytest.mark.slow
@pytest.mark.fault
def test_grid_exactly_once_with_four_workers_then_resume_recomputes_nothing(tmp_path, tiny_data_dir, sqlite_url):
    name = unique("grid4")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb",),
                             models=["fake-a", "fake-b"])
    spec = load_spec(study)
    assert spec.n_cells == 16
    procs = [start_fake_worker(study, sqlite_url, i, sleep=0.05) for i in range(4)]
    assert wait_all(procs, timeout=180) == [0, 0, 0, 0]
    trials = trials_of(sqlite_url, name)
    complete = cell_counts(trials)
    assert len(complete) == 16 and set(complete.values()) == {1}, complete.most_common(3)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING", "FAIL")]
    assert len(trials) == 16
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) >= 2  # the cells were really shared between processes

    # Re-running resumes: nothing is recomputed.
    procs = [start_fake_worker(study, sqlite_url, i, sleep=0.05) for i in range(2)]
    assert wait_all(procs, timeout=60) == [0, 0]
    assert len(trials_of(sqlite_url, name)) == 16


@pytest.mark.slow
@pytest.mark.fault
def test_sigkilled_worker_cell_is_rerun_after_heartbeat_grace(tmp_path, tiny_data_dir, sqlite_url):
    name = unique("kill")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent", "ibn"),
                             datasets=("stsb",), models=["fake"])
    procs = [start_fake_worker(study, sqlite_url, i, sleep=2.5, interval=1, grace=3) for i in range(2)]
    victim = wait_for_running_trial(sqlite_url, name, timeout=60)
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    killed = next(p for p in procs if p.pid == pid)
    os.kill(pid, signal.SIGKILL)
    codes = wait_all(procs, timeout=120)
    assert codes[procs.index(killed)] == -signal.SIGKILL
    assert codes[1 - procs.index(killed)] == 0
    trials = trials_of(sqlite_url, name)
    by_number = {t.number: t for t in trials}
    dead = by_number[victim.number]
    assert dead.state.name == "FAIL"
    assert dead.user_attrs["failure"].startswith("worker lost: no heartbeat")
    complete = cell_counts(trials)
    assert len(complete) == 3 and set(complete.values()) == {1}
    rerun = [t for t in trials if t.state.name == "COMPLETE" and t.params == dead.params]
    assert rerun and rerun[0].user_attrs["retry_of"] == victim.number
    assert "failure" not in rerun[0].user_attrs
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("signum,shown", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")],
                         ids=["sigint", "sigterm"])
def test_signal_marks_running_trial_failed_with_reason_and_rerun_completes(tmp_path, tiny_data_dir, sqlite_url,
                                                                           signum, shown):
    name = unique("signal")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent"), datasets=("stsb",),
                             models=["fake"])
    proc = start_fake_worker(study, sqlite_url, 0, sleep=30)
    wait_for_running_trial(sqlite_url, name, timeout=60)
    proc.send_signal(signum)
    assert wait_all([proc], timeout=30) == [130]
    trials = trials_of(sqlite_url, name)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1
    assert failed[0].user_attrs["failure"].startswith(f"interrupted: stopped by {shown}")
    assert not [t for t in trials if t.state.name == "RUNNING"]

    # The next run re-runs the interrupted cell (retry_of) and finishes; interruptions don't use up retries.
    proc = start_fake_worker(study, sqlite_url, 0, sleep=0.05)
    assert wait_all([proc], timeout=60) == [0]
    trials = trials_of(sqlite_url, name)
    assert len(cell_counts(trials)) == 2
    retried = [t for t in trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert retried and retried[0].state.name == "COMPLETE"


@pytest.mark.slow
def test_failing_cell_is_retried_max_retries_times_then_worker_gives_up(tmp_path, tiny_data_dir, sqlite_url):
    name = unique("retry")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "angle"), datasets=("stsb",),
                             models=["fake"], max_retries=2)
    procs = [start_fake_worker(study, sqlite_url, i, sleep=0.05, fail_losses="angle") for i in range(2)]
    codes = wait_all(procs, timeout=90)
    assert 1 in codes and set(codes) <= {0, 1}
    trials = trials_of(sqlite_url, name)
    angle = [t for t in trials if t.params.get("loss") == "angle"]
    assert len(angle) == 3 and all(t.state.name == "FAIL" for t in angle)  # 1 + max_retries
    assert all("injected failure" in t.user_attrs["failure"] for t in angle)
    assert [t.user_attrs.get("retry_of") for t in sorted(angle, key=lambda t: t.number)][1:] == \
        [t.number for t in sorted(angle, key=lambda t: t.number)][:-1]
    assert len(cell_counts(trials)) == 1

    # --retry-failed (after fixing the cause) gives the cell a new round; it then completes.
    handle = open_storage(sqlite_url, heartbeat_interval=1, grace_period=3)
    try:
        service = StudyService(load_spec(study), handle)
        service.reset_retries(service.create_or_load())
    finally:
        handle.close()
    assert wait_all([start_fake_worker(study, sqlite_url, 0, sleep=0.05)], timeout=60) == [0]
    trials = trials_of(sqlite_url, name)
    assert len(cell_counts(trials)) == 2 and len(trials) == 5


@pytest.mark.slow
def test_tpe_runs_exactly_n_trials_with_two_workers_and_distinct_points(tmp_path, tiny_data_dir, sqlite_url):
    name = unique("tpe")
    study = write_tpe_study(tmp_path, name, None, tiny_data_dir, n_trials=10, models=["fake"])
    procs = [start_fake_worker(study, sqlite_url, i, sleep=0.3) for i in range(2)]
    assert wait_all(procs, timeout=120) == [0, 0]
    trials = trials_of(sqlite_url, name)
    assert len(trials) == 10 and all(t.state.name == "COMPLETE" for t in trials)
    points = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(points) == 10
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_changed_study_file_is_refused_but_mutable_keys_resume(tmp_path, tiny_data_dir, sqlite_url):
    from tuner.errors import TunerError

    name = unique("compat")
    path = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse",), datasets=("stsb",), models=["m"])
    handle = open_storage(sqlite_url, heartbeat_interval=1, grace_period=3)
    try:
        StudyService(load_spec(path), handle).prepare()
        path.write_text(path.read_text().replace('max_retries = 2', 'max_retries = 5'))
        StudyService(load_spec(path), handle).prepare()  # max_retries may change
        path.write_text(path.read_text().replace('"cos_mse"', '"cosent"'))
        with pytest.raises(TunerError, match=r"different version .*differs in: grid"):
            StudyService(load_spec(path), handle).prepare()
    finally:
        handle.close()


def test_prepare_queues_each_cell_once_and_status_reports_it(tmp_path, tiny_data_dir, sqlite_url, capsys):
    from tuner.cli import main

    name = unique("status")
    path = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent"), datasets=("stsb",),
                            models=["m"])
    assert main(["status", "--study", str(path), "--storage", sqlite_url]) == 2
    assert "does not exist" in capsys.readouterr().err
    handle = open_storage(sqlite_url, heartbeat_interval=1, grace_period=3)
    try:
        for _ in range(3):  # several machines/runs preparing the same study queue each cell once
            _, progress = StudyService(load_spec(path), handle).prepare()
        assert progress.waiting == 2 and progress.complete == 0
    finally:
        handle.close()
    assert main(["status", "--study", str(path), "--storage", sqlite_url, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["WAITING"] == 2 and st["trials"] == 2
    assert st["grid"]["cells"] == 2 and st["grid"]["complete"] == 0 and st["grid"]["coverage"] == 0
    assert st["best"] is None and st["running"] == []
    assert main(["status", "--study", str(path), "--storage", sqlite_url, "--study-name", "other"]) == 2
    assert "no study 'other'" in capsys.readouterr().err
    assert main(["status", "--study", str(path), "--storage", sqlite_url]) == 0
    assert "0/2 cells complete" in capsys.readouterr().out


def test_worker_plans_pin_gpus_and_split_cpu_cores():
    from tuner.errors import TunerError
    from tuner.service._workers import aggregate, plan_workers, worker_env

    gpus = ["0", "1", "2", "3"]
    plans = plan_workers(None, None, available=gpus, cores=16)
    assert [p.gpu for p in plans] == gpus and all(p.threads == 4 for p in plans)  # default: one per GPU
    plans = plan_workers(None, "0,2", available=gpus, cores=16)
    assert [p.gpu for p in plans] == ["0", "2"]
    # indexes count among the *visible* GPUs (CUDA_VISIBLE_DEVICES=4,5 -> index 1 is physical 5)
    assert [p.gpu for p in plan_workers(None, "1", available=["4", "5"], cores=8)] == ["5"]
    env = worker_env(plans[1], {"PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["OMP_NUM_THREADS"] == "8"
    with pytest.raises(TunerError, match=r"--gpus 7: there is no GPU 7 \(this machine has 4 visible GPU\(s\): 0..3\)"):
        plan_workers(None, "7", available=gpus, cores=16)
    with pytest.raises(TunerError, match="no visible GPU"):
        plan_workers(None, "0", available=[], cores=2)
    with pytest.raises(TunerError, match="listed twice"):
        plan_workers(None, "1,1", available=gpus, cores=2)
    with pytest.raises(TunerError, match="--workers 0"):
        plan_workers(0, None, available=[], cores=2)
    cpu = plan_workers(2, None, available=[], cores=2)
    assert [(p.gpu, p.threads) for p in cpu] == [(None, 1), (None, 1)]
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(cpu[0], {"PATH": "/bin"})
    hidden = plan_workers(1, "none", available=gpus, cores=4)
    assert worker_env(hidden[0], {})["CUDA_VISIBLE_DEVICES"] == ""
    assert aggregate([0, 0]) == 0 and aggregate([0, 130]) == 130 and aggregate([0, 1]) == 1
    assert aggregate([0, -9]) == 1


# --------------------------------------------------------------------------------------------
# end to end: python -m tuner optimize on the tiny BERT


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, env=env_with_repo(env), text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.slow
def test_optimize_cli_two_workers_grid_records_contract_and_resumes(tmp_path, tiny_model_dir, tiny_data_dir):
    name = unique("cli-grid")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent+ibn+angle"),
                             datasets=("stsb", "sickr"))
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    result = run_cli(["optimize", "--study", str(study), "--storage", url, "--workers", "2",
                      "--heartbeat-interval", "1", "--grace-period", "3", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout)
    assert status["grid"] == {"cells": 4, "complete": 4, "coverage": 1.0, "duplicates": 0, "missing": []}
    assert status["counts"]["COMPLETE"] == 4 and status["counts"]["RUNNING"] == 0
    trials = trials_of(url, name)
    assert set(cell_counts(trials).values()) == {1} and len(trials) == 4
    attrs = trials[0].user_attrs
    for key in ("model", "loss", "weights", "taus", "pooling", "train_datasets", "eval_datasets", "task", "metric",
                "protocol", "device", "wall_s", "train_pairs_per_s", "peak_mem_mb", "versions", "worker"):
        assert key in attrs, key
    ds = attrs["train_datasets"][0]
    assert f"scores.dev.{ds}" in attrs and f"scores.test.{ds}" in attrs
    assert trials[0].value == pytest.approx(attrs[f"scores.dev.{ds}"])
    assert set(attrs["versions"]) >= {"torch", "transformers", "optuna", "tuner"}
    assert attrs["pooling"] == "cls" and attrs["protocol"] == "seed" and "failure" not in attrs
    zero = status["zero_shot"]  # "<model>.<dataset>.<split>" -> score, recorded once per study
    assert sorted(".".join(k.rsplit(".", 2)[1:]) for k in zero) == ["sickr.dev", "sickr.test", "stsb.dev", "stsb.test"]
    assert all(k.rsplit(".", 2)[0] == str(tiny_model_dir) for k in zero)
    artifacts = [k for k in trials[0].system_attrs if k.startswith("artifacts:")]
    assert len(artifacts) == 2 and (tmp_path / "artifacts").is_dir()

    again = run_cli(["optimize", "--study", str(study), "--storage", url], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to do" in again.stderr
    assert len(trials_of(url, name)) == 4

    st = run_cli(["status", "--study", str(study), "--storage", url], tmp_path)
    assert st.returncode == 0 and "4/4 cells complete" in st.stdout and "duplicates 0" in st.stdout


@pytest.mark.slow
@pytest.mark.fault
def test_optimize_cli_sigkill_worker_mid_trial_cell_ends_complete(tmp_path, tiny_model_dir, tiny_data_dir):
    name = unique("cli-kill")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent", "angle"),
                             datasets=("stsb",))
    # longer trials so the kill lands mid-trial: more steps on the tiny model
    study.write_text(study.read_text().replace("epochs = 1", "epochs = 1\nmax_steps = 400"))
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "optimize", "--study", str(study), "--storage", url,
                             "--workers", "2", "--heartbeat-interval", "1", "--grace-period", "3", "--json"],
                            cwd=tmp_path, env=env_with_repo(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        def victim():
            try:
                sid = handle.storage.get_study_id_from_name(name)
            except KeyError:
                return None
            running = [t for t in handle.storage.get_all_trials(sid) if t.state.name == "RUNNING"
                       and "worker" in t.user_attrs]
            return running[0] if running else None

        trial = wait_until(victim, timeout=120, interval=0.2)
    finally:
        handle.close()
    os.kill(int(trial.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    status = json.loads(out)
    assert status["grid"]["complete"] == 3 and status["grid"]["duplicates"] == 0
    assert -signal.SIGKILL in status["worker_exit_codes"]
    trials = trials_of(url, name)
    dead = next(t for t in trials if t.number == trial.number)
    assert dead.state.name == "FAIL" and dead.user_attrs["failure"].startswith("worker lost")
    assert any(t.user_attrs.get("retry_of") == trial.number and t.state.name == "COMPLETE" for t in trials)
    assert set(cell_counts(trials).values()) == {1}


@pytest.mark.slow
@pytest.mark.fault
def test_optimize_cli_ctrl_c_marks_running_trial_failed_and_exits_130(tmp_path, tiny_model_dir, tiny_data_dir):
    name = unique("cli-int")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse",), datasets=("stsb",))
    study.write_text(study.read_text().replace("epochs = 1", "epochs = 1\nmax_steps = 100000"))
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "optimize", "--study", str(study), "--storage", url,
                             "--workers", "1", "--no-artifacts"], cwd=tmp_path, env=env_with_repo(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_running_trial(url, name, timeout=120, interval=0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "stopping 1 worker(s)" in err
    trials = trials_of(url, name)
    assert [t.state.name for t in trials] == ["FAIL"]
    assert trials[0].user_attrs["failure"].startswith("interrupted: stopped by Ctrl-C (SIGINT)")


@pytest.mark.real
@pytest.mark.slow
def test_real_minilm_one_cell_of_sts_grid_quick(tmp_path, shared_data):
    """The shipped quick grid, cut to one cell (CoSENT on STS-B), with the real all-MiniLM-L6-v2 and
    the real data: the fine-tuned dev Spearman is sane and the zero-shot row is recorded."""
    import tomllib

    raw = tomllib.loads((REPO_ROOT / "studies" / "sts-grid-quick.toml").read_text())
    raw["name"] = unique("real-cell")
    raw["data"]["datasets"] = ["stsb"]
    raw["grid"]["losses"] = ["cosent"]
    study = tmp_path / "one-cell.toml"
    study.write_text(toml_dump(raw))
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    result = run_cli(["optimize", "--study", str(study), "--storage", url, "--json"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout)
    assert status["grid"]["complete"] == 1 and status["counts"]["COMPLETE"] == 1
    (trial,) = trials_of(url, raw["name"])
    assert trial.user_attrs["model"] == "all-MiniLM-L6-v2" and trial.user_attrs["device"].startswith("cpu")
    assert 0.5 < trial.user_attrs["scores.dev.stsb"] <= 1 and 0.5 < trial.user_attrs["scores.test.stsb"] <= 1
    zero = status["zero_shot"]
    assert set(zero) == {"all-MiniLM-L6-v2.stsb.dev", "all-MiniLM-L6-v2.stsb.test"}
    assert all(0.3 < v < 1 for v in zero.values())


def test_a_large_grid_is_queued_a_few_cells_at_a_time_and_runs_every_cell_once(tmp_path, tiny_data_dir, sqlite_url):
    """Only GRID_QUEUE_AHEAD cells wait at a time (each step re-reads every unfinished trial), and the
    workers still finish all 16 cells exactly once."""
    from tuner.service._study_service import GRID_QUEUE_AHEAD

    name = unique("window")
    path = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent", "ibn", "angle"),
                            datasets=("stsb", "sickr"), models=["m1", "m2"])
    handle = open_storage(sqlite_url, heartbeat_interval=1, grace_period=3)
    try:
        _, progress = StudyService(load_spec(path), handle).prepare()
    finally:
        handle.close()
    assert GRID_QUEUE_AHEAD < 16 and progress.waiting == GRID_QUEUE_AHEAD and progress.target == 16
    assert [t.state.name for t in trials_of(sqlite_url, name)] == ["WAITING"] * GRID_QUEUE_AHEAD
    procs = [start_fake_worker(path, sqlite_url, i, sleep=0.05) for i in range(2)]
    assert wait_all(procs, timeout=180) == [0, 0]
    trials = trials_of(sqlite_url, name)
    cells = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(trials) == 16 and len(set(cells)) == 16 and all(t.state.name == "COMPLETE" for t in trials)


def test_an_error_raised_while_a_stop_is_requested_is_recorded_as_the_interruption(tmp_path, tiny_data_dir):
    """A SIGTERM that lands inside a lazy import surfaces as some other exception (once: a RuntimeError
    from ``__set_name__``); the trial is still an interruption, so the next run re-runs it."""
    from tuner.service._trial_runtime import SignalGuard

    name = unique("stopping")
    study_file = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse",), datasets=("stsb",),
                                  models=["fake"])
    handle = open_storage(f"sqlite:///{tmp_path / 'stop.db'}", heartbeat_interval=None, grace_period=None)
    try:
        service = StudyService(load_spec(study_file), handle)
        study = service.create_or_load()
        trial = study.ask()
        guard = SignalGuard()

        def objective(trial, choice):
            guard.requested = "SIGTERM"  # what the handler does before its KeyboardInterrupt got wrapped
            raise RuntimeError("Error calling __set_name__ on 'LazyExpr'")

        state, value, failure = service._run_one(study, trial, None, objective, guard)
        assert state.name == "FAIL" and value is None
        assert failure == "interrupted: stopped by SIGTERM during the trial"
        assert study.trials[0].user_attrs["failure"] == failure
    finally:
        handle.close()
