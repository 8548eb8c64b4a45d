"""Opening a study's storage: :func:`open_storage` -> a :class:`StorageHandle`.

- :func:`open_storage`: an :class:`optuna.storages.RDBStorage` with heartbeats (a worker that
  dies stops beating; after the grace period its trial is failed and re-run) whose calls are
  retried on transient lock errors ("database is locked", MySQL deadlocks) and, for up to
  ``$TUNER_STORAGE_RETRY_S`` seconds (default 120) with backoff, on a lost connection (server
  restarted, network cut); after that a one-line :class:`StorageUnavailable`
  (:mod:`tuner.storage._retry`). SQLite is opened in WAL mode with a busy timeout, and every
  transaction starts with ``BEGIN IMMEDIATE`` so optuna's read-then-write steps (popping a WAITING
  trial) are atomic between local processes (:mod:`tuner.storage._rdb`).
- ``StorageHandle.lock``: a lock shared by every process of a study, on every machine
  (:mod:`tuner.storage._locks`). The service takes it to enqueue grid cells and pop trials.
- ``grpc://host:port``: a client of ``python -m tuner storage-proxy`` (:mod:`tuner.storage._grpc`),
  accepted wherever a storage URL is.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from tuner.errors import TunerError
from tuner.storage._locks import file_lock, named_lock, sqlite_lock_dir
from tuner.storage._retry import _quiet_pool_disconnects, call_with_retry, storage_retry_seconds
from tuner.storage._urls import (
    _DRIVER_PACKAGES,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    dialect_of,
    mask_url,
    resolve_url,
    sqlite_path,
)

# gRPC reads these when it is imported, and every module of this room that imports it (_grpc, _proxy)
# loads after this one. Its C core prints INFO lines of its own on stderr (each failed TLS handshake of a
# grpcs:// client, each address a proxy could not bind); tuner says what went wrong in one line instead.
# Its fork handlers restart gRPC's threads in a forked child: `optimize` forks its workers (subprocess with
# a preexec_fn) while its progress line holds a grpc:// channel, and a child whose gRPC threads woke before
# its exec died of SIGABRT/SIGSEGV (exit -6/-11, a worker lost now and then). No process of tuner uses
# gRPC between fork and exec, so it needs no fork support.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# --------------------------------------------------------------------------------------------
# Opening a storage


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


class StorageConfigError(TunerError, ValueError):
    """A bad heartbeat interval / grace period: a :class:`TunerError` (one line, exit 2) that is also
    the ``ValueError`` Optuna's storages raise for bad arguments."""


# PostgreSQL: notice a cut network in seconds, not after the kernel's ~15 minutes of TCP
# retransmissions: keepalives on idle connections, TCP_USER_TIMEOUT on unacknowledged writes.
# Keepalives both ways. The client side finds a dead server; the server side (``options``, session
# settings any user may set) finds a dead *client* within about half a minute, so a host that loses
# its network while holding the study lock or a row lock does not block the other hosts for the
# kernel's default two hours.
PG_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                   "keepalives_count": 3, "tcp_user_timeout": 20000,
                   "options": "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
                              "-c tcp_user_timeout=20000"}


@dataclass
class StorageHandle:
    """An opened storage plus what the service needs around it."""

    url: str
    storage: Any  # TunerRDBStorage or TunerGrpcStorage
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
        if self.dialect == "grpc":
            with contextlib.suppress(Exception):
                self.storage.close()
            return
        with contextlib.suppress(Exception):
            self.storage.remove_session()
        with contextlib.suppress(Exception):
            self.storage.engine.dispose()


def check_heartbeat_settings(heartbeat_interval: Optional[int], grace_period: Optional[int]) -> None:
    """Raise a one-line :class:`StorageConfigError` (also a ``ValueError``) for unusable settings."""
    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise StorageConfigError(f"heartbeat interval is {heartbeat_interval}; use 1 second or more")
    if grace_period is not None and grace_period < 1:
        raise StorageConfigError(f"grace period is {grace_period}; use 1 second or more")
    if grace_period is not None and heartbeat_interval is not None and grace_period <= heartbeat_interval:
        raise StorageConfigError(f"grace period {grace_period}s must be longer than the heartbeat interval "
                                 f"{heartbeat_interval}s")


def open_storage(url: Optional[str] = None, *, heartbeat_interval: Optional[int] = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: Optional[int] = DEFAULT_GRACE_PERIOD, must_exist: bool = False,
                 engine_options: Optional[dict[str, Any]] = None) -> StorageHandle:
    """Open (and create the tables of) the storage at ``url`` (resolved with :func:`resolve_url`).

    ``must_exist``: an SQLite file that does not exist is an error instead of being created
    (``status`` and ``dashboard`` only read). Raises a one-line :class:`TunerError` when the
    storage cannot be reached. ``grpc://host:port`` opens a client of ``python -m tuner
    storage-proxy`` (:mod:`tuner.storage._grpc`). ``engine_options``: extra SQLAlchemy engine
    arguments for a database server (the proxy sizes its connection pool with them).
    """
    resolved = resolve_url(url)
    dialect = dialect_of(resolved)
    storage_retry_seconds()  # a bad $TUNER_STORAGE_RETRY_S is an error now, not during an outage
    _quiet_pool_disconnects()
    check_heartbeat_settings(heartbeat_interval, grace_period)
    try:
        import optuna
        import sqlalchemy  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise TunerError(f"optuna/sqlalchemy are not installed ({exc}); run the README's install command") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if dialect == "grpc":
        try:
            from tuner.storage._grpc import open_grpc_storage
        except ImportError as exc:
            raise TunerError(f"grpc:// storage needs grpcio and protobuf ({exc}); pip install -e '.[proxy]'") from None

        storage = open_grpc_storage(resolved, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        return StorageHandle(resolved, storage, heartbeat_interval, grace_period)
    from tuner.storage._rdb import open_tuner_rdb, sqlite_engine_kwargs

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
        engine_kwargs = sqlite_engine_kwargs(str(path) if path is not None else ":memory:")
    elif dialect == "postgresql":
        engine_kwargs = {"pool_pre_ping": True, "connect_args": dict(PG_CONNECT_ARGS)}
    else:
        engine_kwargs = {"pool_pre_ping": True, "pool_recycle": 3600, "connect_args": {"connect_timeout": 10}}
    if dialect != "sqlite":
        engine_kwargs.update(engine_options or {})

    def build() -> Any:
        return open_tuner_rdb(resolved, engine_kwargs, heartbeat_interval, grace_period)

    try:
        if dialect == "sqlite":
            with file_lock(sqlite_lock_dir(resolved), "create-tables", 120.0):
                storage = call_with_retry(build, retry_disconnects=False)
        else:
            try:
                storage = call_with_retry(build, retry_disconnects=False)
            except Exception as exc:  # concurrent first-time table creation on a server: once more
                if "already exists" not in str(exc) and "Duplicate" not in str(exc):
                    raise
                time.sleep(0.5)
                storage = call_with_retry(build, retry_disconnects=False)
    except TunerError:
        raise
    except ImportError as exc:
        package = _DRIVER_PACKAGES.get(resolved.split("://", 1)[0], "the database driver")
        raise TunerError(f"the driver for {mask_url(resolved)} is not installed ({exc}); pip install {package}") from None
    except Exception as exc:  # noqa: BLE001 - any connection/schema error becomes one line
        raise _connect_error(resolved, exc) from None
    return StorageHandle(resolved, storage, heartbeat_interval, grace_period)


# --------------------------------------------------------------------------------------------
# Studies


def delete_study(handle: StorageHandle, name: str) -> bool:
    """Delete study ``name`` if it exists (tests and ``--fresh`` clean up with it)."""
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=handle.storage)
        return True
    except KeyError:
        return False
