"""Locks shared by every process of a study, on every machine (``StorageHandle.lock``).

``pg_advisory_lock`` on PostgreSQL (waited for in the server, not polled), ``GET_LOCK`` on
MySQL/MariaDB, ``flock`` on a file beside an SQLite database (a thread lock for an in-memory one),
and for ``grpc://`` a lease the storage proxy holds on the database's lock
(:mod:`tuner.storage._proxy`). The service takes one to enqueue grid cells and pop trials, so a cell
is queued once and run by one worker.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from tuner.errors import TunerError
from tuner.storage._retry import call_with_retry, is_disconnect
from tuner.storage._urls import sqlite_path

_log = logging.getLogger("tuner.storage")


def _lock_key(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def sqlite_lock_dir(url: str) -> Optional[Path]:
    path = sqlite_path(url)
    if path is None:
        return None
    return path.resolve().parent / (path.name + "-locks")


_MEMORY_LOCKS: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def file_lock(folder: Optional[Path], name: str, timeout: float) -> Iterator[None]:
    if folder is None:  # in-memory database: one process only
        lock = _MEMORY_LOCKS.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=timeout):
            raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}'")
        try:
            yield
        finally:
            lock.release()
        return

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (_lock_key(name)[:16] + ".lock")
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}' ({path}); "
                                     "is another tuner process stuck?") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


PG_LOCK_SLICE_S = 5.0


def _pg_wait_for_lock(conn: Any, params: dict, deadline: float) -> None:
    """Wait for ``pg_advisory_lock`` *in the server* (no polling: hundreds of waiting workers cost no
    CPU and no queries), in slices of ``lock_timeout`` so the deadline is kept; ``lock_timeout`` is reset
    afterwards, since the connection goes back to the pool that Optuna's queries use."""
    from sqlalchemy import text

    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            conn.execute(text(f"SET lock_timeout = {max(1, int(min(left, PG_LOCK_SLICE_S) * 1000))}"))
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), params)
                return
            except Exception as exc:  # noqa: BLE001 - only the slice running out is expected
                if "lock timeout" not in str(exc).lower():
                    raise
    finally:
        conn.execute(text("RESET lock_timeout"))


def _holds(conn: Any, dialect: str, params: dict) -> bool:
    """Whether this connection holds the lock (after a wait that may have ended at the deadline)."""
    from sqlalchemy import text

    if dialect == "postgresql":
        return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND "
                                      "pid = pg_backend_pid() AND granted AND "
                                      "((classid::bigint << 32) | objid::bigint) = :k)"), params).scalar())
    return conn.execute(text("SELECT IS_USED_LOCK(:n) = CONNECTION_ID()"), params).scalar() in (True, 1)


@contextlib.contextmanager
def named_lock(handle: Any, name: str, timeout: float = 600.0) -> Iterator[None]:
    """Exclusive lock ``name`` across every process using this storage (all machines).

    ``handle``: a :class:`tuner.storage.StorageHandle` (its ``url``, ``dialect``, ``masked`` and ``storage``).
    """
    dialect = handle.dialect
    if dialect == "grpc":  # served by the proxy process (tuner.storage._proxy)
        with handle.storage.lock(name, timeout):
            yield
        return
    if dialect == "sqlite":
        with file_lock(sqlite_lock_dir(handle.url), name, timeout):
            yield
        return
    from sqlalchemy import text

    engine = handle.storage.engine
    deadline = time.monotonic() + timeout
    if dialect == "postgresql":
        params = {"k": int(_lock_key(name)[:15], 16)}  # fits a signed bigint
        take, release = "SELECT pg_try_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)"
    else:
        params = {"n": "tuner:" + _lock_key(name)[:40]}
        take, release = "SELECT GET_LOCK(:n, 1)", "SELECT RELEASE_LOCK(:n)"

    def acquire() -> tuple[Any, Any]:
        raw = engine.connect()
        try:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            if dialect == "postgresql" and timeout > 0:
                _pg_wait_for_lock(conn, params, deadline)
            else:  # GET_LOCK waits up to 1 s in the server per try; timeout 0: one try
                while conn.execute(text(take), params).scalar() not in (True, 1):
                    if time.monotonic() > deadline:
                        break
            if time.monotonic() > deadline and not _holds(conn, dialect, params):
                raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}' on {handle.masked}")
            return raw, conn
        except BaseException:
            with contextlib.suppress(Exception):
                raw.close()
            raise

    raw, conn = call_with_retry(acquire, describe=lambda: handle.masked)
    try:
        yield
    finally:
        try:
            conn.execute(text(release), params)
        except Exception as exc:  # noqa: BLE001
            if not is_disconnect(exc):
                raise
            # The server ends a lock with its session; the step it guarded re-checks what it wrote.
            _log.warning("the connection holding lock '%s' was lost; the server released the lock", name)
        finally:
            with contextlib.suppress(Exception):
                raw.close()
