"""``python -m tuner storage-proxy`` and ``--storage grpc://host:port`` (issue #15, part 3).

- URLs and unreachable proxies are one-line errors; the client pickles; binding another address
  than loopback with --insecure prints a warning (without it: tests/storage/test_proxy_security.py).
- Through the proxy (PostgreSQL behind it): the study lock excludes processes (and direct
  database clients), 4 fake-objective workers run every grid cell exactly once.
- Faults: the proxy (plain, and locked with TLS + token) is SIGKILLed mid-study and restarted on the same port; a throwaway PostgreSQL
  cluster behind the proxy is restarted mid-study. Workers retry and finish; every cell complete
  exactly once.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _pgcluster import available as pg_available
from _pgcluster import free_port, throwaway_cluster
from _tiny import PG_URL, env_with_repo, require_server, start_fake_worker, unique, wait_all, write_grid_study
from _tls import lock_proxy
from test_faults import ALL_ROWS, assert_exactly_once
from test_storage import _check_lock_excludes
from tuner.errors import TunerError
from tuner.storage import delete_study, open_storage, resolve_url


def start_proxy_cli(url: str, port: int, host: str = "127.0.0.1", extra: tuple = (),
                    log: "Path | None" = None) -> subprocess.Popen:
    """``storage-proxy`` serving ``url`` (``extra``: more flags, e.g. TLS; the token comes from the environment;
    ``log``: a file for its stderr, readable while it runs)."""
    err = open(log, "w") if log is not None else subprocess.PIPE
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tuner", "storage-proxy", "--storage", url, "--host", host,
                                 "--port", str(port), *extra], env=env_with_repo(), stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True)
    finally:
        if log is not None:
            err.close()
    line = proc.stdout.readline()  # printed once it listens
    if "storage proxy for" not in line:
        proc.wait(timeout=30)
        assert False, (line, log.read_text() if log is not None else proc.stderr.read())
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drop_study(url: str, name: str) -> None:
    """Delete a test's study from the server (cleanup, also after a failure)."""
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        delete_study(handle, name)
    finally:
        handle.close()


def trials_of(url: str, name: str) -> list:
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        try:
            return handle.storage.get_all_trials(handle.storage.get_study_id_from_name(name))
        except KeyError:
            return []
    finally:
        handle.close()


def wait_complete(url: str, name: str, n: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = sum(t.state.name == "COMPLETE" for t in trials_of(url, name))
        if done >= n:
            break
        time.sleep(0.2)
    return done


# ------------------------------------------------------------------ no server needed
@pytest.mark.parametrize("bad", ["grpc://127.0.0.1", "grpc://:13000", "grpc://h:99999", "grpc://u:p@h:1/db"])
def test_bad_grpc_urls_are_one_line_errors(bad):
    with pytest.raises(TunerError, match=r"write grpc://HOST:PORT") as info:
        resolve_url(bad)
    assert "\n" not in str(info.value)


def test_unreachable_proxy_is_one_line_error():
    with pytest.raises(TunerError, match=r"cannot open storage grpc://127\.0\.0\.1:1: .*storage-proxy is running"):
        open_storage(f"grpc://127.0.0.1:1", heartbeat_interval=None, grace_period=None)


def test_proxy_client_pickles_and_non_loopback_bind_warns(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "storage-proxy", "--storage", f"sqlite:///{tmp_path / 'p.db'}",
                             "--host", "0.0.0.0", "--port", str(port), "--insecure"], env=env_with_repo(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "storage proxy for sqlite:///" in proc.stdout.readline()
        handle = open_storage(f"grpc://127.0.0.1:{port}", heartbeat_interval=2, grace_period=5)
        try:
            import optuna

            optuna.create_study(storage=handle.storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1),
                                                                                n_trials=2)
            copy = pickle.loads(pickle.dumps(handle.storage))
            assert copy.heartbeat_interval == 2 and len(copy.get_all_trials(copy.get_study_id_from_name("s"))) == 2
            copy.close()
        finally:
            handle.close()
    finally:
        stop(proc)
    warning = proc.stderr.read()
    assert warning.startswith("warning: --insecure: the storage proxy on 0.0.0.0 serves every study"), warning


def test_storage_proxy_refuses_a_busy_port_in_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "tuner", "storage-proxy", "--storage",
                                  f"sqlite:///{tmp_path / 'p.db'}", "--port", str(port)], env=env_with_repo(),
                                 capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: cannot listen on 127.0.0.1:"), result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ PostgreSQL behind the proxy
@pytest.fixture
def pg_proxy():
    require_server(PG_URL)
    proc = start_proxy_cli(PG_URL, port := free_port())
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.db
@pytest.mark.slow
def test_proxy_lock_excludes_processes_and_direct_clients(tmp_path, pg_proxy):
    _check_lock_excludes(tmp_path, pg_proxy)
    via_proxy = open_storage(pg_proxy, heartbeat_interval=None, grace_period=None)
    direct = open_storage(PG_URL, heartbeat_interval=None, grace_period=None)
    try:
        with via_proxy.lock("shared"):
            with pytest.raises(TunerError, match="timed out"):
                with direct.lock("shared", timeout=0.3):
                    pass
        with direct.lock("shared"):
            with pytest.raises(TunerError, match="timed out"):
                with via_proxy.lock("shared", timeout=0.3):
                    pass
    finally:
        via_proxy.close()
        direct.close()


@pytest.mark.db
@pytest.mark.slow
def test_proxy_four_workers_grid_exactly_once(tmp_path, tiny_data_dir, pg_proxy):
    name = unique("proxy4")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb",),
                             models=["fake-a", "fake-b"])
    try:
        procs = [start_fake_worker(study, pg_proxy, i, sleep=0.1) for i in range(4)]
        assert wait_all(procs, timeout=240) == [0, 0, 0, 0]
        trials = trials_of(PG_URL, name)
        assert_exactly_once(trials, 16)
        assert len(trials) == 16 and len({t.user_attrs["worker"] for t in trials}) >= 3
    finally:
        drop_study(PG_URL, name)


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("locked", [False, True], ids=["plain", "locked"])
def test_proxy_killed_and_restarted_mid_study(tmp_path, tiny_data_dir, locked, monkeypatch):
    """Also through a locked proxy (TLS + token: tests/storage/test_proxy_security.py)."""
    require_server(PG_URL)
    port = free_port()
    extra = lock_proxy(tmp_path / "pki", monkeypatch) if locked else ()
    url = f"{'grpcs' if locked else 'grpc'}://127.0.0.1:{port}"
    name = unique("proxykill")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb",),
                             models=["fake-a", "fake-b"])
    proxy = start_proxy_cli(PG_URL, port, extra=extra)
    procs = []
    try:
        procs = [start_fake_worker(study, url, i, sleep=0.5, interval=1, grace=15) for i in range(2)]
        assert wait_complete(PG_URL, name, 3) >= 3, "the study did not start"
        stop(proxy, signal.SIGKILL)
        time.sleep(5)  # longer than a trial: workers meet the outage while telling, popping and beating
        proxy = start_proxy_cli(PG_URL, port, extra=extra)
        codes = wait_all(procs, timeout=240)
        output = "".join(p.stdout.read() for p in procs)
        assert codes == [0, 0], output[-3000:]
        assert "lost the connection to the storage proxy" in output and "reachable again" in output, output[-3000:]
        assert_exactly_once(trials_of(PG_URL, name), 16)
    finally:
        stop(proxy)
        for p in procs:
            if p.poll() is None:
                p.kill()
        drop_study(PG_URL, name)


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.fault
def test_database_restarted_behind_the_proxy(tmp_path, tiny_data_dir):
    why = pg_available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"cannot make a throwaway PostgreSQL cluster: {why}")
        pytest.skip(why)
    with throwaway_cluster() as cluster:
        port = free_port()
        url = f"grpc://127.0.0.1:{port}"
        name = unique("dbrestart")
        study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=ALL_ROWS, datasets=("stsb",),
                                 models=["fake-a", "fake-b"])
        proxy = start_proxy_cli(cluster.url(), port)
        procs = []
        try:
            procs = [start_fake_worker(study, url, i, sleep=0.5, interval=1, grace=15) for i in range(2)]
            assert wait_complete(cluster.url(), name, 3) >= 3, "the study did not start"
            cluster.stop("fast")  # every connection of the proxy is dropped
            time.sleep(4)
            cluster.start()
            codes = wait_all(procs, timeout=240)
            output = "".join(p.stdout.read() for p in procs)
            assert codes == [0, 0], output[-3000:]
            assert proxy.poll() is None, "the proxy died with the database"
            assert_exactly_once(trials_of(cluster.url(), name), 16)
        finally:
            stop(proxy)
            for p in procs:
                if p.poll() is None:
                    p.kill()
        proxy_log = proxy.stderr.read()
        assert "lost the connection to postgresql" in proxy_log and "Traceback" not in proxy_log, proxy_log[-3000:]
