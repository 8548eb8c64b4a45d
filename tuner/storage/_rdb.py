"""Tuner's :class:`optuna.storages.RDBStorage`: every call retried on transient errors.

Kept apart from :mod:`tuner.storage` (which imports no optuna at import time) so that the class
is a plain module-level class: it pickles like an ``RDBStorage`` (multiprocessing, joblib, Dask,
Ray hand storages to other processes that way). Its SQLite connection factory is a picklable
object, not a closure, and the ``BEGIN IMMEDIATE`` hook is installed again when an unpickled copy
builds its engine.

Retried methods keep Optuna's contract: they return what ``RDBStorage`` returns and raise what it
raises (``KeyError``, ``UpdateFinishedTrialError``, ...); only lock errors and lost connections are
retried (:func:`tuner.storage.call_with_retry`).
"""
from __future__ import annotations

import functools
import sqlite3
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Optional

from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage

from tuner.storage._retry import retrying_method
from tuner.storage._urls import SQLITE_BUSY_TIMEOUT_S, mask_url

# Methods of BaseStorage / BaseHeartbeat, plus what optuna's _CachedStorage (the wrapper every
# Study puts around an RDBStorage) calls.
RETRIED_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_best_trial", "record_heartbeat", "_get_stale_trial_ids", "get_trial_param", "get_trial_user_attrs",
    "get_trial_system_attrs", "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id",
)


@dataclass(frozen=True)
class SQLiteConnect:
    """``creator`` for SQLAlchemy: a tuned ``sqlite3`` connection (picklable, unlike a closure).

    ``isolation_level=None``: sqlite3 emits no BEGIN itself; for a file database the engine's
    "begin" event emits ``BEGIN IMMEDIATE`` (SQLAlchemy pysqlite docs, "Serializable isolation"),
    so optuna's read-then-write steps are atomic between processes. An in-memory database has one
    connection shared by the threads of one process (StaticPool): its "begin" event emits a plain
    ``BEGIN`` unless that connection is already in a transaction, and tuner's storage calls take
    turns on it (``_IN_MEMORY_TURNS``), so a failed call's rollback undoes what it flushed (Optuna
    retries ``create_new_trial`` after one). A frozen dataclass: compared by value, so an unpickled
    storage's ``engine_kwargs`` equal the original's.
    """

    database: str

    @property
    def in_memory(self) -> bool:
        return self.database == ":memory:"

    def __call__(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.database, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if not self.in_memory:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn


def sqlite_engine_kwargs(database: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"creator": SQLiteConnect(database)}
    if database == ":memory:":
        from sqlalchemy.pool import StaticPool

        kwargs["poolclass"] = StaticPool
    return kwargs


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_unless_in_transaction(conn: Any) -> None:
    """In-memory SQLite: a transaction per call, so that a rollback undoes the call's flushed rows.
    The one connection is shared; a session opened outside tuner's calls (a raw ``scoped_session``)
    may still hold a transaction on it, which the call then joins instead of failing with
    "cannot start a transaction within a transaction"."""
    if not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN")


def _install_begin(engine: Any, in_memory: bool) -> None:
    from sqlalchemy import event

    hook = _begin_unless_in_transaction if in_memory else _begin_immediate
    if not event.contains(engine, "begin", hook):
        event.listen(engine, "begin", hook)


class TunerRDBStorage(RDBStorage):
    """``RDBStorage`` whose calls are retried on lock errors and lost connections.

    Built directly it warns like ``RDBStorage`` (heartbeats are "experimental" in Optuna);
    :func:`open_tuner_rdb` - what :func:`tuner.storage.open_storage` uses - silences that one warning.
    """

    def __init__(self, url: str, engine_kwargs: Optional[dict[str, Any]] = None, *,
                 heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                         grace_period=grace_period, **kwargs)
        self._setup_engine()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._setup_engine()

    def _setup_engine(self) -> None:
        creator = (self.engine_kwargs or {}).get("creator")
        self._in_memory = isinstance(creator, SQLiteConnect) and creator.in_memory
        if isinstance(creator, SQLiteConnect):
            _install_begin(self.engine, self._in_memory)

    def _describe(self) -> str:
        return mask_url(self.engine.url.render_as_string(hide_password=True))


def open_tuner_rdb(url: str, engine_kwargs: dict[str, Any], heartbeat_interval: Optional[int],
                   grace_period: Optional[int], **kwargs: Any) -> TunerRDBStorage:
    """A :class:`TunerRDBStorage`, without Optuna's ExperimentalWarning for the heartbeat arguments
    (tuner turns heartbeats on, not its user; the filter applies to this call only: a
    ``TunerRDBStorage(...)`` or ``RDBStorage(...)`` built directly still warns). ``kwargs``: more
    ``RDBStorage`` arguments (``skip_table_creation``, ``heartbeat_stale_trial_callback``, ...)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning, message=r".*(heartbeat_interval|grace_period).*")
        return TunerRDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period, **kwargs)


# One in-memory database is one sqlite3 connection shared by the threads of the process (StaticPool):
# two threads' transactions on it would be one, so the calls take turns (which also makes optuna's
# read-then-write steps, a new trial's number or a state change, atomic there). File and server
# databases have a connection per thread and isolate with their own locks instead.
_IN_MEMORY_TURNS = threading.RLock()


def _taking_turns_in_memory(method: Any) -> Any:
    @functools.wraps(method)
    def call(self: TunerRDBStorage, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "_in_memory", False):
            return method(self, *args, **kwargs)
        with _IN_MEMORY_TURNS:
            return method(self, *args, **kwargs)
    return call


for _name in RETRIED_METHODS:
    _base = getattr(RDBStorage, _name, None)
    if _base is not None:
        setattr(TunerRDBStorage, _name, _taking_turns_in_memory(retrying_method(_base)))
