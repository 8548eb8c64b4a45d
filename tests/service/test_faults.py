"""Fault tests: how users break long studies, and what must survive.

- 4 worker processes on one grid, on PostgreSQL and MariaDB (SQLite: tests/service/test_service.py):
  every cell COMPLETE exactly once, nothing left RUNNING or WAITING.
- The database connection is cut mid-study (a proxy between workers and server resets every
  connection and refuses new ones): workers retry with backoff and finish, or, when it stays
  away, stop with one line and the next run resumes. Nothing complete is lost or duplicated.
- A full disk or read-only folder when saving a model or an export: one line, exit 2, study intact;
  a full artifacts folder never fails a trial.
- A trial that runs out of memory is FAIL with the reason and its cell re-runs; a NaN loss is
  PRUNED with the reason; the worker goes on.
- ``export`` while workers write: every export is one consistent snapshot.

All are marked ``fault`` (and ``slow``; server ones ``db``), run in CI, and clean up after
themselves (studies deleted from the servers, filesystems unmounted).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _faults import CuttableProxy, host_port, proxied, tiny_filesystem
from _tiny import (MYSQL_URL, PG_URL, env_with_repo, require_server, start_fake_worker, unique, wait_all,
                   write_grid_study)
from tuner.storage import delete_study, open_storage
from tuner.study import cell_key, load_spec

pytestmark = [pytest.mark.fault, pytest.mark.slow]
SERVERS = [pytest.param(PG_URL, id="postgresql", marks=pytest.mark.db),
           pytest.param(MYSQL_URL, id="mariadb", marks=pytest.mark.db)]
ALL_ROWS = ("cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle", "cosent+ibn+angle")


def all_trials(url: str, name: str) -> list:
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        return handle.storage.get_all_trials(handle.storage.get_study_id_from_name(name))
    finally:
        handle.close()


def assert_exactly_once(trials: list, cells: int) -> None:
    complete = Counter(cell_key(t.params) for t in trials if t.state.name == "COMPLETE")
    assert len(complete) == cells, f"{len(complete)}/{cells} cells complete"
    assert set(complete.values()) == {1}, f"duplicated cells: {complete.most_common(3)}"
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")], "orphaned trials"


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, env=env_with_repo(env), text=True,
                          capture_output=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in line[0], line[0]
    return line[0]


@pytest.fixture
def server_study(request):
    """Study names created on a server during a test, deleted afterwards."""
    made: list[tuple[str, str]] = []
    yield made
    for url, name in made:
        handle = open_storage(url, heartbeat_interval=None, grace_period=None)
        try:
            delete_study(handle, name)
        finally:
            handle.close()


# ------------------------------------------------------------------ concurrency on the servers
@pytest.mark.parametrize("url", SERVERS)
def test_four_workers_grid_exactly_once_on_server(tmp_path, tiny_data_dir, url, server_study):
    require_server(url)
    name = unique("grid4")
    server_study.append((url, name))
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb",),
                             models=["fake-a", "fake-b"])
    # no worker dies here: a long grace keeps a worker stalled by a loaded machine from being taken
    # for dead (its cell would be re-run and, after max_retries, the others would give up)
    procs = [start_fake_worker(study, url, i, sleep=0.1, grace=20) for i in range(4)]
    codes = wait_all(procs, timeout=240)
    assert codes == [0, 0, 0, 0], "\n".join(p.stdout.read()[-1500:] for p in procs if p.returncode)
    trials = all_trials(url, name)
    assert_exactly_once(trials, 16)
    assert len(trials) == 16 and not [t for t in trials if t.state.name == "FAIL"]
    assert len({t.user_attrs["worker"] for t in trials}) >= 3  # really shared between processes


# ------------------------------------------------------------------ the database goes away
@pytest.mark.parametrize("url", SERVERS)
def test_connection_cut_mid_study_workers_reconnect_and_finish(tmp_path, tiny_data_dir, url, server_study):
    require_server(url)
    proxy = CuttableProxy(*host_port(url)).start()
    via = proxied(url, proxy)
    name = unique("outage")
    server_study.append((url, name))
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb",),
                             models=["fake-a", "fake-b"])
    try:
        procs = [start_fake_worker(study, via, i, sleep=0.5, interval=1, grace=15) for i in range(2)]
        handle = open_storage(url, heartbeat_interval=None, grace_period=None)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    done = [t for t in handle.storage.get_all_trials(handle.storage.get_study_id_from_name(name))
                            if t.state.name == "COMPLETE"]
                except KeyError:
                    done = []
                if len(done) >= 3:
                    break
                time.sleep(0.1)
        finally:
            handle.close()
        assert len(done) >= 3, "the study did not start"
        proxy.cut()
        time.sleep(6)  # longer than a trial: workers hit the outage while telling, popping and beating
        proxy.restore()
        codes = wait_all(procs, timeout=240)
        output = "".join(p.stdout.read() for p in procs)
        assert codes == [0, 0], output[-3000:]
    finally:
        proxy.close()
    assert "lost the connection to" in output and "reachable again" in output, output[-3000:]
    assert "s3cret" not in output
    assert_exactly_once(all_trials(url, name), 16)


@pytest.mark.parametrize("url", SERVERS)
def test_storage_gone_for_good_stops_with_one_line_then_resumes(tmp_path, tiny_model_dir, tiny_data_dir, url,
                                                                server_study):
    """Real ``optimize`` (tiny BERT): the server stays away longer than $TUNER_STORAGE_RETRY_S, the
    worker stops with one line; once it is back the same command finishes the grid."""
    require_server(url)
    proxy = CuttableProxy(*host_port(url)).start()
    via = proxied(url, proxy)
    name = unique("gone")
    server_study.append((url, name))
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent", "ibn", "angle"),
                             datasets=("stsb",))
    args = ["optimize", "--study", str(study), "--storage", via, "--workers", "1", "--no-artifacts",
            "--heartbeat-interval", "1", "--grace-period", "3"]
    env = {"TUNER_STORAGE_RETRY_S": "4"}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tuner", *args], cwd=tmp_path, env=env_with_repo(env),
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        handle = open_storage(url, heartbeat_interval=None, grace_period=None)
        try:
            deadline = time.monotonic() + 120
            complete = 0
            while time.monotonic() < deadline and complete < 1 and proc.poll() is None:
                try:
                    complete = sum(t.state.name == "COMPLETE" for t in
                                   handle.storage.get_all_trials(handle.storage.get_study_id_from_name(name)))
                except KeyError:
                    pass
                time.sleep(0.05)
        finally:
            handle.close()
        assert complete >= 1, "no trial completed before the cut"
        proxy.cut()
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert "Traceback" not in stderr, stderr[-3000:]
        stops = [line for line in stderr.splitlines() if "lost the connection to" in line and line.startswith("error:")]
        assert stops and "run the same command again to resume" in stops[0], stderr[-3000:]
        before = [t for t in all_trials(url, name) if t.state.name == "COMPLETE"]
        assert len(before) >= complete

        proxy.restore()
        again = run_cli(args, tmp_path, env=env)
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        proxy.close()
    trials = all_trials(url, name)
    assert_exactly_once(trials, 4)
    kept = {t.number: t.value for t in trials if t.state.name == "COMPLETE"}
    assert all(kept[t.number] == t.value for t in before)  # nothing complete was lost or recomputed


# ------------------------------------------------------------------ disk full / read-only
def test_model_save_on_full_disk_is_one_line_error(tmp_path, tiny_model_dir, tiny_data_dir):
    with tiny_filesystem(tmp_path, size="16k") as full:
        result = run_cli(["finetune", "--model", str(tiny_model_dir), "--train", "stsb", "--data-dir",
                          str(tiny_data_dir), "--batch-size", "8", "--output", str(full / "model")], tmp_path)
        assert_one_line_error(result, "cannot write the model to", "No space left on device")
    with tiny_filesystem(tmp_path, read_only=True) as ro:
        result = run_cli(["finetune", "--model", str(tiny_model_dir), "--train", "stsb", "--data-dir",
                          str(tiny_data_dir), "--batch-size", "8", "--output", str(ro / "model")], tmp_path)
        assert_one_line_error(result, "Read-only file system")


def test_export_to_full_or_read_only_folder_fails_cleanly_and_study_stays(tmp_path, tiny_data_dir):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("exp")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent", "ibn"),
                             datasets=("stsb",), models=["fake"])
    assert wait_all([start_fake_worker(study, url, 0, sleep=0.01)], timeout=60) == [0]
    before = [(t.number, t.state.name, t.value) for t in all_trials(url, name)]
    with tiny_filesystem(tmp_path, read_only=True) as ro:
        result = run_cli(["export", "--study", name, "--storage", url, "--out", str(ro / "out")], tmp_path)
        assert_one_line_error(result, "Read-only file system")
    with tiny_filesystem(tmp_path, size="24k") as full:  # room for the probe and tables, not the plots
        result = run_cli(["export", "--study", name, "--storage", url, "--out", str(full / "out")], tmp_path)
        assert_one_line_error(result, "No space left on device")
        assert not [p for p in (full / "out").rglob("*.tmp")], "a half-written file was left behind"
    assert [(t.number, t.state.name, t.value) for t in all_trials(url, name)] == before
    ok = run_cli(["export", "--study", name, "--storage", url, "--out", str(tmp_path / "out")], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "matrix.json").read_text())["n_complete_trials"] == 3


def test_full_artifacts_folder_never_fails_a_trial(tmp_path, tiny_model_dir, tiny_data_dir):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("art")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                             datasets=("stsb",))
    with tiny_filesystem(tmp_path, size="8k") as full:
        result = run_cli(["optimize", "--study", str(study), "--storage", url, "--artifacts", str(full / "a")],
                         tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not upload" in result.stderr and "No space left on device" in result.stderr
    assert_exactly_once(all_trials(url, name), 2)


# ------------------------------------------------------------------ out of memory, NaN loss
def run_real_worker_in_process(study: Path, url: str) -> int:
    import torch

    from objectives import get_objective
    from objectives.common import WorkerContext
    from tuner.service._study_service import StudyService

    spec = load_spec(study)
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        service = StudyService(spec, handle)
        ctx = WorkerContext(spec=spec, handle=handle, study_name=service.name, device=torch.device("cpu"),
                            worker="test")
        objective = get_objective(spec.task)
        service.create_or_load()
        return service.run_worker(lambda trial, choice: objective(trial, choice, ctx), log=lambda s: None)
    finally:
        handle.close()


def test_oom_trial_fails_with_reason_and_its_cell_reruns(tmp_path, tiny_model_dir, tiny_data_dir, monkeypatch):
    import torch

    import tuner.engine._run

    real = tuner.engine._run.finetune
    calls = Counter()

    def finetune(encoder, data, config, **kw):
        calls["n"] += 1
        if calls["n"] == 1:  # the first trial asks for more memory than there is
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by the test)")
        return real(encoder, data, config, **kw)

    monkeypatch.setattr(tuner.engine._run, "finetune", finetune)
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("oom")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                             datasets=("stsb",))
    assert run_real_worker_in_process(study, url) == 0
    trials = all_trials(url, name)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["failure"].startswith("out_of_memory: CUDA out of memory")
    assert "peak_mem_mb" in failed[0].user_attrs
    assert_exactly_once(trials, 2)
    rerun = next(t for t in trials if t.state.name == "COMPLETE" and t.params == failed[0].params)
    assert rerun.user_attrs["retry_of"] == failed[0].number


def test_nan_loss_trial_is_pruned_with_reason_and_worker_goes_on(tmp_path, tiny_model_dir, tiny_data_dir,
                                                                 monkeypatch):
    import tuner.engine._run

    real = tuner.engine._run.finetune

    def finetune(encoder, data, config, **kw):
        if config.weights.get("cosent"):  # this cell's embeddings turn to NaN: the loss is NaN
            hook = encoder.register_forward_hook(lambda module, args, out: out * float("nan"))
            try:
                return real(encoder, data, config, **kw)
            finally:
                hook.remove()
        return real(encoder, data, config, **kw)

    monkeypatch.setattr(tuner.engine._run, "finetune", finetune)
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("nan")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent", "ibn"),
                             datasets=("stsb",))
    assert run_real_worker_in_process(study, url) == 0
    trials = all_trials(url, name)
    states = {t.params["loss"]: t.state.name for t in trials}
    assert states == {"cos_mse": "COMPLETE", "cosent": "PRUNED", "ibn": "COMPLETE"}
    pruned = next(t for t in trials if t.state.name == "PRUNED")
    assert pruned.user_attrs["failure"].startswith("nan_loss: loss became nan at step 1")
    assert len(trials) == 3  # a NaN cell is not retried


# ------------------------------------------------------------------ export while workers write
def test_export_while_workers_write_is_a_consistent_snapshot(tmp_path, tiny_data_dir):
    from tuner.exporter import export_study

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("snap")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb", "sickr"),
                             models=["fake"])
    procs = [start_fake_worker(study, url, i, sleep=0.3) for i in range(2)]
    exports = 0
    try:
        while any(p.poll() is None for p in procs):
            out = tmp_path / f"export-{exports}"
            try:
                result = export_study(name, out, storage_url=url, plots=False)
            except Exception as exc:  # noqa: BLE001 - only "no complete trial yet" is acceptable
                assert "no COMPLETE trials yet" in str(exc) or "does not exist" in str(exc) or "no study" in str(exc), exc
                time.sleep(0.1)
                continue
            exports += 1
            payload = json.loads((out / "matrix.json").read_text())
            cells = [n for row in payload["trials"][0] for n in row if n is not None]  # (rows, datasets)
            assert len(cells) == len(set(cells)) == payload["n_complete_trials"] == payload["filled_cells"]
            assert result.matrix.values.shape == tuple(payload["shape"])
            csv_rows = (out / "results.csv").read_text().strip().splitlines()
            assert len(csv_rows) >= 2 and not list(out.glob("*.tmp"))
            assert all(t.state.name == "COMPLETE" for t in all_trials(url, name) if t.number in cells)
    finally:
        codes = wait_all(procs, timeout=180)
    assert codes == [0, 0] and exports >= 3
    assert_exactly_once(all_trials(url, name), 16)


# ------------------------------------------------------------------ a cell queued twice
def test_cell_queued_twice_runs_once_and_the_copy_is_failed_as_duplicate(tmp_path, tiny_data_dir):
    """What a lost lock connection can leave behind (two workers queue one cell): it still runs once."""
    from tuner.service._study_service import StudyService

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("dup")
    study_file = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent"),
                                  datasets=("stsb",), models=["fake"])
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        service = StudyService(load_spec(study_file), handle)
        study, _ = service.prepare()
        first = study.get_trials(deepcopy=False)[0]
        study.enqueue_trial(dict(first.system_attrs["fixed_params"]), skip_if_exists=False)
        ran = []

        def objective(trial, choice):
            ran.append(choice.loss)
            trial.set_user_attr(f"scores.dev.{choice.train[0]}", 0.5)
            return 0.5

        assert service.run_worker(objective, log=lambda s: None) == 0
    finally:
        handle.close()
    trials = all_trials(url, name)
    assert_exactly_once(trials, 2)
    assert sorted(ran) == ["cos_mse", "cosent"]
    dup = [t for t in trials if t.state.name == "FAIL"]
    assert len(dup) == 1 and dup[0].user_attrs["failure"].startswith("duplicate:")
