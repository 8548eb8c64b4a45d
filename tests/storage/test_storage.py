"""Storage URLs and masking, SQLite under several processes, cross-process locks, and the real
PostgreSQL / MariaDB servers (marked ``db``: skipped when a server is down outside CI, failed in CI)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _tiny import (MYSQL_URL, PG_URL, env_with_repo, require_server, start_fake_worker, unique, wait_all,
                   write_grid_study)
from tuner.errors import TunerError
from tuner.storage._locks import named_lock
from tuner.storage import default_artifacts_dir, delete_study, is_transient, mask_url, open_storage, resolve_url
from tuner.study import cell_key


@pytest.mark.parametrize("given,expected", [
    ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("mysql://root@127.0.0.1:3306/test", "mysql+pymysql://root@127.0.0.1:3306/test"),
    ("mariadb://root@h/test", "mysql+pymysql://root@h/test"),
    ("sqlite:///tuner.db", "sqlite:///tuner.db"),
    ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
    ("runs/my.db", "sqlite:///runs/my.db"),
])
def test_resolve_url_normalises_drivers(given, expected):
    assert resolve_url(given) == expected


def test_resolve_url_env_and_default(monkeypatch):
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    assert resolve_url(None) == "sqlite:///tuner.db"
    monkeypatch.setenv("TUNER_STORAGE", "postgres://a:b@h/db")
    assert resolve_url(None) == "postgresql+psycopg://a:b@h/db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"  # the flag wins


@pytest.mark.parametrize("bad,pattern", [
    ("postgress://u@h/db", r"scheme 'postgress://' \(--storage\) is not supported"),
    ("oracle://u@h/db", "is not supported"),
    ("sqlite://relative.db", "too few slashes"),
    ("just-a-name", "is not a URL"),
])
def test_resolve_url_errors_are_one_line(bad, pattern):
    with pytest.raises(TunerError, match=pattern) as info:
        resolve_url(bad)
    assert "\n" not in str(info.value)


def test_mask_url_hides_passwords_everywhere():
    assert mask_url("postgresql+psycopg://user:s3cret@db.example:5432/optuna") == \
        "postgresql+psycopg://user:***@db.example:5432/optuna"
    assert mask_url("mysql+pymysql://root@127.0.0.1/test") == "mysql+pymysql://root@127.0.0.1/test"
    assert "s3cret" not in mask_url("weird://user:s3cret@host")
    with pytest.raises(TunerError) as info:
        resolve_url("postgress://user:s3cret@h/db")
    assert "s3cret" not in str(info.value)


def test_unreachable_server_is_one_line_error_with_masked_url():
    with pytest.raises(TunerError) as info:
        open_storage("postgresql://user:s3cret@127.0.0.1:1/db")
    message = str(info.value)
    assert message.startswith("cannot open storage postgresql+psycopg://user:***@127.0.0.1:1/db")
    assert "s3cret" not in message and "\n" not in message and "PostgreSQL is running" in message
    with pytest.raises(TunerError, match="MySQL/MariaDB is running"):
        open_storage("mysql://root:pw@127.0.0.1:1/test")
    with pytest.raises(TunerError, match="does not exist"):
        open_storage("sqlite:////no/such/folder/x.db")


def test_sqlite_is_wal_with_busy_timeout_and_artifacts_beside(tmp_path):
    import sqlite3

    handle = open_storage(f"sqlite:///{tmp_path / 't.db'}", heartbeat_interval=1, grace_period=3)
    handle.close()
    assert sqlite3.connect(tmp_path / "t.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert default_artifacts_dir(f"sqlite:///{tmp_path / 't.db'}") == tmp_path / "artifacts"
    with pytest.raises(TunerError, match="does not exist; run python -m tuner optimize first"):
        open_storage(f"sqlite:///{tmp_path / 'missing.db'}", must_exist=True)


def test_transient_errors_are_recognised():
    class Wrapped(Exception):
        pass

    try:
        try:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        except RuntimeError as inner:
            raise Wrapped("An exception is raised during the commit") from inner
    except Wrapped as exc:
        assert is_transient(exc)
    assert is_transient(RuntimeError("(1213, 'Deadlock found when trying to get lock')"))
    assert not is_transient(RuntimeError("no such table"))


def test_lost_connections_are_recognised_and_retried_within_the_window(monkeypatch):
    from tuner.storage import StorageUnavailable, call_with_retry, is_disconnect, last_call_reconnected

    for text in ("consuming input failed: server closed the connection unexpectedly",
                 'connection failed: connection to server at "127.0.0.1", port 5 failed: Connection refused',
                 "(2013, 'Lost connection to MySQL server during query')", "(2006, 'MySQL server has gone away')"):
        try:
            try:
                raise RuntimeError(text)
            except RuntimeError as inner:
                raise ValueError("An exception is raised during the commit.") from inner
        except ValueError as exc:
            assert is_disconnect(exc) and not is_transient(exc), text
    assert not is_disconnect(RuntimeError("duplicate key value violates unique constraint"))

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("server closed the connection unexpectedly")
        return "ok"

    assert call_with_retry(flaky) == "ok" and len(calls) == 3 and last_call_reconnected()
    assert call_with_retry(lambda: "again") == "again" and not last_call_reconnected()

    monkeypatch.setenv("TUNER_STORAGE_RETRY_S", "0.5")
    start = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        call_with_retry(lambda: (_ for _ in ()).throw(RuntimeError("Connection refused")), describe=lambda: "db://x")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith("lost the connection to db://x") and "run the same command again" in message
    with pytest.raises(RuntimeError, match="refused"):  # opening a storage never waits for a wrong host
        call_with_retry(lambda: (_ for _ in ()).throw(RuntimeError("Connection refused")), retry_disconnects=False)

    # SQLAlchemy's pool logs a traceback when it cannot reset a dropped connection: not shown.
    import io
    import logging

    open_storage("sqlite://")
    pool_log, buffer = logging.getLogger("sqlalchemy.pool.impl.QueuePool"), io.StringIO()
    handler = logging.StreamHandler(buffer)
    pool_log.addHandler(handler)
    try:
        for text in ("(2013, 'Lost connection to MySQL server during query')", "a real pool bug"):
            try:
                raise RuntimeError(text)
            except RuntimeError:
                pool_log.error("Exception during reset or similar", exc_info=True)
    finally:
        pool_log.removeHandler(handler)
    assert "Lost connection" not in buffer.getvalue() and "a real pool bug" in buffer.getvalue()

    monkeypatch.setenv("TUNER_STORAGE_RETRY_S", "soon")
    with pytest.raises(TunerError, match="TUNER_STORAGE_RETRY_S"):
        open_storage("sqlite://")


POP_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
import optuna
from tuner.storage import open_storage
handle = open_storage(sys.argv[1], heartbeat_interval=None, grace_period=None)
storage = handle.storage
sid = storage.get_study_id_from_name(sys.argv[2])
got = []
TS = optuna.trial.TrialState
while True:
    waiting = storage.get_all_trials(sid, deepcopy=False, states=(TS.WAITING,))
    if not waiting:
        break
    for t in waiting:  # optuna's own pop: WAITING -> RUNNING, no tuner lock around it
        try:
            if storage.set_trial_state_values(t._trial_id, state=TS.RUNNING):
                got.append(t.number)
                break
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
print(json.dumps(got))
"""


@pytest.mark.slow
def test_sqlite_pop_of_waiting_trials_is_atomic_between_processes(tmp_path):
    """Storage-level check (no tuner lock): with BEGIN IMMEDIATE, 4 processes popping 60 queued
    trials as fast as they can each get disjoint trials, and no 'database is locked' escapes."""
    import optuna

    url = f"sqlite:///{tmp_path / 'pop.db'}"
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    study = optuna.create_study(storage=handle.storage, study_name="pop", direction="maximize")
    for i in range(60):
        study.enqueue_trial({"x": i})
    handle.close()
    script = tmp_path / "pop.py"
    script.write_text(POP_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), url, "pop", str(Path(__file__).resolve().parents[2])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_repo())
             for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    popped = [n for r in results for n in r]
    assert sorted(popped) == list(range(60)), Counter(popped).most_common(3)


LOCK_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
from tuner.storage import open_storage
handle = open_storage(sys.argv[1], heartbeat_interval=None, grace_period=None)
with open(sys.argv[2], "a") as log:
    for _ in range(int(sys.argv[3])):
        with handle.lock("test-lock"):
            log.write("in\n"); log.flush()
            time.sleep(0.01)
            log.write("out\n"); log.flush()
handle.close()
"""


def _check_lock_excludes(tmp_path: Path, url: str) -> None:
    script = tmp_path / "lock.py"
    script.write_text(LOCK_SCRIPT)
    log = tmp_path / "lock.log"
    procs = [subprocess.Popen([sys.executable, str(script), url, str(log), "15", str(Path(__file__).resolve().parents[2])],
                              env=env_with_repo(), stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    lines = log.read_text().split()
    assert len(lines) == 90 and lines == ["in", "out"] * 45  # never two holders at once


@pytest.mark.slow
def test_named_lock_excludes_processes_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    open_storage(url, heartbeat_interval=None, grace_period=None).close()
    _check_lock_excludes(tmp_path, url)


# --------------------------------------------------------------------------------------------
# PostgreSQL and MariaDB (the real servers on this machine and in CI)

SERVERS = [pytest.param(PG_URL, id="postgresql"), pytest.param(MYSQL_URL, id="mariadb")]


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.parametrize("url", SERVERS)
def test_server_lock_excludes_processes(tmp_path, url):
    require_server(url)
    _check_lock_excludes(tmp_path, url)


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("url", SERVERS)
def test_server_grid_exactly_once_two_workers_and_sigkill_rerun(tmp_path, tiny_data_dir, url):
    """Service loop on the server (fake objective): 2 workers, one SIGKILLed mid-trial; every cell
    ends COMPLETE exactly once, nothing left RUNNING; the study is deleted afterwards."""
    import os
    import signal

    require_server(url)
    name = unique("db-grid")
    study = write_grid_study(tmp_path, name, None, tiny_data_dir, losses=("cos_mse", "cosent", "ibn", "angle"),
                             datasets=("stsb", "sickr"), models=["fake"])
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        procs = [start_fake_worker(study, url, i, sleep=1.0, interval=1, grace=3) for i in range(2)]
        deadline = time.monotonic() + 90
        victim = None
        while victim is None and time.monotonic() < deadline:
            try:
                sid = handle.storage.get_study_id_from_name(name)
                running = [t for t in handle.storage.get_all_trials(sid)
                           if t.state.name == "RUNNING" and "worker" in t.user_attrs]
                victim = running[0] if running else None
            except KeyError:
                pass
            time.sleep(0.1)
        assert victim is not None
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        codes = wait_all(procs, timeout=180)
        assert sorted(codes) == [-signal.SIGKILL, 0]
        sid = handle.storage.get_study_id_from_name(name)
        trials = handle.storage.get_all_trials(sid)
        complete = Counter(cell_key(t.params) for t in trials if t.state.name == "COMPLETE")
        assert len(complete) == 8 and set(complete.values()) == {1}
        assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
        dead = next(t for t in trials if t.number == victim.number)
        assert dead.state.name == "FAIL" and dead.user_attrs["failure"].startswith("worker lost")
    finally:
        delete_study(handle, name)
        handle.close()


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.parametrize("url", SERVERS)
def test_server_optimize_cli_tiny_bert_two_workers(tmp_path, tiny_model_dir, tiny_data_dir, url):
    """``python -m tuner optimize --workers 2`` on the real server with the tiny BERT: each cell
    COMPLETE exactly once, no RUNNING left; the study is deleted afterwards."""
    require_server(url)
    name = unique("db-cli")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent", "angle"),
                             datasets=("stsb",))
    try:
        result = subprocess.run([sys.executable, "-m", "tuner", "optimize", "--study", str(study), "--workers", "2",
                                 "--heartbeat-interval", "1", "--grace-period", "5", "--no-artifacts", "--json"],
                                cwd=tmp_path, env=env_with_repo({"TUNER_STORAGE": url}), capture_output=True,
                                text=True, timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        status = json.loads(result.stdout)
        assert status["storage"] == mask_url(resolve_url(url))
        assert status["grid"]["complete"] == 3 and status["grid"]["duplicates"] == 0
        assert status["counts"]["COMPLETE"] == 3 and status["counts"]["RUNNING"] == 0
        assert status["counts"]["FAIL"] == 0
    finally:
        handle = open_storage(url, heartbeat_interval=None, grace_period=None)
        delete_study(handle, name)
        handle.close()
