"""Where studies live: storage URLs, SQLite tuning for several workers, cross-process locks.

- :func:`resolve_url`: ``--storage``, else ``$TUNER_STORAGE``, else ``sqlite:///tuner.db`` (in
  the working directory). ``postgres://`` and ``postgresql://`` use the psycopg 3 driver,
  ``mysql://`` and ``mariadb://`` use pymysql; a bare ``*.db`` path means SQLite.
- :func:`mask_url`: ``postgresql+psycopg://user:***@host/db``. Every URL that is printed or saved
  goes through it.
- :func:`open_storage`: an :class:`optuna.storages.RDBStorage` with heartbeats (a worker that
  dies stops beating; after the grace period its trial is failed and re-run) whose calls are
  retried on transient lock errors ("database is locked", MySQL deadlocks). SQLite is opened in
  WAL mode with a busy timeout, and every transaction starts with ``BEGIN IMMEDIATE`` so optuna's
  read-then-write steps (popping a WAITING trial) are atomic between local processes.
- :func:`named_lock`: a lock shared by every process of a study, on every machine:
  ``pg_advisory_lock`` on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB, ``flock`` on a file beside
  an SQLite database. The service takes it to enqueue grid cells and pop trials.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from tuner.errors import TunerError

ENV_STORAGE = "TUNER_STORAGE"
DEFAULT_URL = "sqlite:///tuner.db"
DEFAULT_HEARTBEAT_INTERVAL = 10
DEFAULT_GRACE_PERIOD = 30
SQLITE_BUSY_TIMEOUT_S = 60.0
_log = logging.getLogger(__name__)

_SCHEMES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}
_DRIVER_PACKAGES = {"postgresql+psycopg": "psycopg[binary]", "postgresql+psycopg2": "psycopg2-binary",
                    "mysql+pymysql": "pymysql"}


# --------------------------------------------------------------------------------------------
# URLs


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to print, log or save)."""
    text = str(url)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(text)
        if parsed.password is None:
            return text
        return parsed.render_as_string(hide_password=True)
    except Exception:  # unparsable: mask anything that looks like user:password@
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", text)


def resolve_url(url: Optional[str] = None) -> str:
    """``--storage`` value, else ``$TUNER_STORAGE``, else ``sqlite:///tuner.db``; normalised."""
    text = url if url is not None and str(url).strip() else os.environ.get(ENV_STORAGE, "")
    text = str(text).strip() or DEFAULT_URL
    origin = "--storage" if url else (ENV_STORAGE if os.environ.get(ENV_STORAGE, "").strip() else "default")
    if "://" not in text:
        if text.endswith((".db", ".sqlite", ".sqlite3")):
            return "sqlite:///" + text
        raise TunerError(
            f"storage '{mask_url(text)}' ({origin}) is not a URL; use sqlite:///tuner.db, "
            "postgresql://user:password@host:5432/db or mysql://user:password@host:3306/db"
        )
    scheme, rest = text.split("://", 1)
    normalised = _SCHEMES.get(scheme.lower())
    if normalised is None:
        raise TunerError(
            f"storage URL scheme '{scheme}://' ({origin}) is not supported; use sqlite:///FILE, "
            "postgresql://user:password@host/db or mysql://user:password@host/db"
        )
    if normalised == "sqlite" and rest not in ("", "/", "/:memory:") and not rest.startswith("/"):
        raise TunerError(
            f"storage '{text}' ({origin}) has too few slashes; write sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    return f"{normalised}://{rest}"


def dialect_of(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql``."""
    return url.split("://", 1)[0].split("+", 1)[0]


def sqlite_path(url: str) -> Optional[Path]:
    """The database file of an SQLite URL (None for in-memory)."""
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def default_artifacts_dir(url: str) -> Path:
    """Artifacts beside an SQLite file (``<db dir>/artifacts``); ``./artifacts`` for servers."""
    if dialect_of(url) == "sqlite":
        db = sqlite_path(url)
        if db is not None:
            return db.resolve().parent / "artifacts"
    return Path("artifacts").resolve()


# --------------------------------------------------------------------------------------------
# Retrying storage


_TRANSIENT = ("database is locked", "database table is locked", "deadlock", "lock wait timeout",
              "could not serialize", "database schema has changed")


def is_transient(exc: BaseException) -> bool:
    """True for lock/deadlock errors that are safe to retry (nothing was committed)."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 8:
        text = str(current).lower()
        if any(marker in text for marker in _TRANSIENT):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def call_with_retry(fn: Callable[[], Any], attempts: int = 8, first_delay: float = 0.05) -> Any:
    delay = first_delay
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by is_transient
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            _log.info("transient storage error (%s); retrying in %.2fs", str(exc).splitlines()[0], delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _make_storage_class() -> type:
    from optuna.storages import RDBStorage

    class TunerRDBStorage(RDBStorage):
        """RDBStorage whose calls are retried on transient lock errors."""

    names = [
        "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
        "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
        "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
        "get_trial_id_from_study_id_trial_number", "set_trial_state_values", "set_trial_intermediate_value",
        "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
        "get_best_trial", "record_heartbeat", "_get_stale_trial_ids",
    ]
    for name in names:
        base = getattr(RDBStorage, name, None)
        if base is None:
            continue

        def make(base: Callable) -> Callable:
            @functools.wraps(base)
            def method(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return call_with_retry(lambda: base(self, *args, **kwargs))
            return method

        setattr(TunerRDBStorage, name, make(base))
    return TunerRDBStorage


_STORAGE_CLASS: Optional[type] = None


def _sqlite_engine_kwargs(path: Optional[Path]) -> dict[str, Any]:
    import sqlite3

    database = str(path) if path is not None else ":memory:"

    def creator() -> "sqlite3.Connection":
        # isolation_level=None: sqlite3 emits no BEGIN itself; SQLAlchemy's "begin" event below
        # emits BEGIN IMMEDIATE (see the SQLAlchemy pysqlite docs, "Serializable isolation").
        conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if path is not None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    kwargs: dict[str, Any] = {"creator": creator}
    if path is None:
        from sqlalchemy.pool import StaticPool

        kwargs["poolclass"] = StaticPool
    return kwargs


def _install_begin_immediate(engine: Any) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:  # pragma: no cover - exercised through the storage
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _connect_error(url: str, exc: BaseException) -> TunerError:
    first = ""
    current: Optional[BaseException] = exc
    while current is not None:
        text = str(current).strip()
        if text:
            first = text.splitlines()[0]
        current = current.__cause__
    first = first.replace(url, mask_url(url))
    dialect = dialect_of(url)
    hint = {"sqlite": "check that the folder exists and is writable",
            "postgresql": "check host, port, user, password and database, and that PostgreSQL is running",
            "mysql": "check host, port, user, password and database, and that MySQL/MariaDB is running"}[dialect]
    return TunerError(f"cannot open storage {mask_url(url)}: {first[:300]}; {hint}")


@dataclass
class StorageHandle:
    """An opened storage plus what the service needs around it."""

    url: str
    storage: Any  # TunerRDBStorage
    heartbeat_interval: Optional[int]
    grace_period: Optional[int]

    @property
    def dialect(self) -> str:
        return dialect_of(self.url)

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def lock(self, name: str, timeout: float = 600.0) -> "contextlib.AbstractContextManager[None]":
        return named_lock(self, name, timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.storage.remove_session()
        with contextlib.suppress(Exception):
            self.storage.engine.dispose()


def open_storage(url: Optional[str] = None, *, heartbeat_interval: Optional[int] = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: Optional[int] = DEFAULT_GRACE_PERIOD, must_exist: bool = False) -> StorageHandle:
    """Open (and create the tables of) the storage at ``url`` (resolved with :func:`resolve_url`).

    ``must_exist``: an SQLite file that does not exist is an error instead of being created
    (``status`` and ``dashboard`` only read). Raises a one-line :class:`TunerError` when the
    storage cannot be reached.
    """
    global _STORAGE_CLASS
    resolved = resolve_url(url)
    dialect = dialect_of(resolved)
    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise TunerError(f"heartbeat interval is {heartbeat_interval}; use 1 second or more")
    if grace_period is not None and heartbeat_interval is not None and grace_period <= heartbeat_interval:
        raise TunerError(f"grace period {grace_period}s must be longer than the heartbeat interval {heartbeat_interval}s")
    try:
        import sqlalchemy  # noqa: F401
        import optuna
    except ImportError as exc:  # pragma: no cover
        raise TunerError(f"optuna/sqlalchemy are not installed ({exc}); run the README's install command") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if _STORAGE_CLASS is None:
        _STORAGE_CLASS = _make_storage_class()

    engine_kwargs: dict[str, Any]
    if dialect == "sqlite":
        path = sqlite_path(resolved)
        if path is not None:
            parent = path.resolve().parent
            if not parent.is_dir():
                raise TunerError(f"storage {resolved}: folder {parent} does not exist; create it or choose another path")
            if must_exist and not path.is_file():
                raise TunerError(f"storage {resolved}: {path} does not exist; run python -m tuner optimize first, "
                                 "or pass --storage / $TUNER_STORAGE naming the study database")
        engine_kwargs = _sqlite_engine_kwargs(path)
    elif dialect == "postgresql":
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "pool_recycle": 3600, "connect_args": {"connect_timeout": 10}}

    def build() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
            return _STORAGE_CLASS(resolved, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period)

    try:
        if dialect == "sqlite":
            with _file_lock(_sqlite_lock_dir(resolved), "create-tables", 120.0):
                storage = call_with_retry(build)
        else:
            try:
                storage = call_with_retry(build)
            except Exception as exc:  # concurrent first-time table creation on a server: once more
                if "already exists" not in str(exc) and "Duplicate" not in str(exc):
                    raise
                time.sleep(0.5)
                storage = call_with_retry(build)
    except TunerError:
        raise
    except ImportError as exc:
        package = _DRIVER_PACKAGES.get(resolved.split("://", 1)[0], "the database driver")
        raise TunerError(f"the driver for {mask_url(resolved)} is not installed ({exc}); pip install {package}") from None
    except Exception as exc:  # noqa: BLE001 - any connection/schema error becomes one line
        raise _connect_error(resolved, exc) from None
    if dialect == "sqlite":
        _install_begin_immediate(storage.engine)
    return StorageHandle(resolved, storage, heartbeat_interval, grace_period)


# --------------------------------------------------------------------------------------------
# Locks shared by all processes of a study


def _lock_key(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def _sqlite_lock_dir(url: str) -> Optional[Path]:
    path = sqlite_path(url)
    if path is None:
        return None
    return path.resolve().parent / (path.name + "-locks")


_MEMORY_LOCKS: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def _file_lock(folder: Optional[Path], name: str, timeout: float) -> Iterator[None]:
    if folder is None:  # in-memory database: one process only
        lock = _MEMORY_LOCKS.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=timeout):
            raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}'")
        try:
            yield
        finally:
            lock.release()
        return
    import fcntl

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


@contextlib.contextmanager
def named_lock(handle: StorageHandle, name: str, timeout: float = 600.0) -> Iterator[None]:
    """Exclusive lock ``name`` across every process using this storage (all machines)."""
    dialect = handle.dialect
    if dialect == "sqlite":
        with _file_lock(_sqlite_lock_dir(handle.url), name, timeout):
            yield
        return
    from sqlalchemy import text

    engine = handle.storage.engine
    deadline = time.monotonic() + timeout
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
        if dialect == "postgresql":
            key = int(_lock_key(name)[:15], 16)  # fits a signed bigint
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                if time.monotonic() > deadline:
                    raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}' on {handle.masked}")
                time.sleep(0.05)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        else:
            key_name = "tuner:" + _lock_key(name)[:40]
            while conn.execute(text("SELECT GET_LOCK(:n, 1)"), {"n": key_name}).scalar() != 1:
                if time.monotonic() > deadline:
                    raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}' on {handle.masked}")
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": key_name})


def delete_study(handle: StorageHandle, name: str) -> bool:
    """Delete study ``name`` if it exists (tests and ``--fresh`` clean up with it)."""
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=handle.storage)
        return True
    except KeyError:
        return False
