"""Retrying storage calls: lock errors a few times, a lost connection for a while.

- :func:`call_with_retry`: retries transient lock errors ("database is locked", MySQL deadlocks) a
  few times with backoff and, for up to ``$TUNER_STORAGE_RETRY_S`` seconds (default 120), a lost
  connection (server restarted, network cut, storage proxy down); after that a one-line
  :class:`StorageUnavailable`. :func:`retrying_method` wraps a storage method in it.
- :func:`is_transient` / :func:`is_disconnect`: which errors those are (read from the whole
  exception chain).
- :func:`last_call_reconnected`: whether this thread's last call needed a reconnect (its first
  attempt may have been committed).
- SQLAlchemy's pool tracebacks for connections the server already dropped are filtered out
  (the retry reports the outage in one line).

Used by :mod:`tuner.storage` (:func:`~tuner.storage.open_storage`), :mod:`tuner.storage._rdb`,
:mod:`tuner.storage._grpc`, :mod:`tuner.storage._locks` and :mod:`tuner.storage._proxy`; imports no optuna.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any, Callable, Iterator, Optional

from tuner.errors import TunerError
from tuner.storage._urls import mask_text

_log = logging.getLogger("tuner.storage")  # the name these messages have always been logged under

_TRANSIENT = ("database is locked", "database table is locked", "deadlock", "lock wait timeout",
              "could not serialize", "database schema has changed")
# The server went away or the network was cut: retry (reconnecting) until the server is back.
_DISCONNECT = ("server closed the connection", "connection refused", "could not connect", "connection timed out",
               "connection reset", "lost connection", "server has gone away", "can't connect to mysql",
               "terminating connection", "the database system is starting up", "the database system is shutting down",
               "consuming input failed", "connection is closed", "connection already closed", "broken pipe",
               "connection to server at", "no connection to the server", "connection was killed",
               "connection is lost", "sending query", "ssl syscall error", "eof detected",
               "can't reconnect until invalid transaction is rolled back", "interfaceerror) (0, '')",
               # gRPC storage proxy (grpc://): proxy down, restarting, or the network cut
               "statuscode.unavailable", "failed to connect to all addresses")
ENV_STORAGE_RETRY = "TUNER_STORAGE_RETRY_S"
DEFAULT_STORAGE_RETRY_S = 120.0
_retry_state = threading.local()


class StorageUnavailable(TunerError):
    """The storage stayed unreachable for the whole retry window."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    current: Optional[BaseException] = exc
    seen = 0
    while current is not None and seen < 8:
        yield current
        current = current.__cause__ or current.__context__
        seen += 1


def is_transient(exc: BaseException) -> bool:
    """True for lock/deadlock errors that are safe to retry (nothing was committed)."""
    return any(any(marker in str(e).lower() for marker in _TRANSIENT) for e in _chain(exc))


def is_disconnect(exc: BaseException) -> bool:
    """True when the database server could not be reached or dropped the connection."""
    if isinstance(exc, StorageUnavailable):
        return False
    for e in _chain(exc):
        if getattr(e, "connection_invalidated", False):
            return True
        text = str(e).lower()
        if any(marker in text for marker in _DISCONNECT):
            return True
    return False


def storage_retry_seconds() -> float:
    text = os.environ.get(ENV_STORAGE_RETRY, "").strip()
    try:
        return max(0.0, float(text)) if text else DEFAULT_STORAGE_RETRY_S
    except ValueError:
        raise TunerError(f"${ENV_STORAGE_RETRY}={text!r} is not a number of seconds; e.g. 120") from None


def last_call_reconnected() -> bool:
    """Whether this thread's last storage call succeeded only after a lost connection.

    Its first attempt may have been committed before the connection dropped, so a call that is
    not idempotent (popping a WAITING trial) checks what really happened.
    """
    return bool(getattr(_retry_state, "reconnected", False))


def call_with_retry(fn: Callable[[], Any], attempts: int = 8, first_delay: float = 0.05,
                    describe: Callable[[], str] = lambda: "the storage", retry_disconnects: bool = True) -> Any:
    """Call ``fn``; retry lock errors ``attempts`` times, lost connections for ``$TUNER_STORAGE_RETRY_S``
    (``retry_disconnects=False`` when first opening a storage: a wrong host fails at once)."""
    delay = first_delay
    lock_attempt = 0
    disconnected_since: Optional[float] = None
    _retry_state.reconnected = False
    while True:
        try:
            result = fn()
            if disconnected_since is not None:
                _retry_state.reconnected = True
                away = time.monotonic() - disconnected_since
                (_log.warning if away >= 1.0 else _log.info)("storage reachable again after %.0fs", away)
            return result
        except Exception as exc:  # noqa: BLE001 - filtered below
            if retry_disconnects and is_disconnect(exc):
                now = time.monotonic()
                if disconnected_since is None:
                    disconnected_since = now
                    window = storage_retry_seconds()
                    _log.warning("lost the connection to %s (%s); retrying for up to %.0fs", describe(),
                                 _first_line(exc) or type(exc).__name__, window)
                if now - disconnected_since >= storage_retry_seconds():
                    raise StorageUnavailable(
                        f"lost the connection to {describe()} for {now - disconnected_since:.0f}s "
                        f"({_first_line(exc)}); finished trials are safe in the storage: once it is back, "
                        f"run the same command again to resume (${ENV_STORAGE_RETRY} sets how long to wait)") from None
                time.sleep(min(max(delay, 0.2), 5.0))
                delay = min(max(delay, 0.2) * 2, 5.0)
                continue
            lock_attempt += 1
            if lock_attempt >= attempts or not is_transient(exc):
                raise
            _log.info("transient storage error (%s); retrying in %.2fs", str(exc).splitlines()[0], delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def retrying_method(base: Callable) -> Callable:
    """``base`` (a storage method) wrapped in :func:`call_with_retry`; the instance's ``_describe()``
    names the storage in messages. Return values and Optuna's exceptions pass through unchanged."""
    @functools.wraps(base)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return call_with_retry(lambda: base(self, *args, **kwargs), describe=self._describe)
    return method


class _DropDisconnectTracebacks(logging.Filter):
    """SQLAlchemy's pool logs a full traceback at ERROR when it cannot reset a connection the
    server already dropped. The retry above reports the outage in one line; drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and is_disconnect(exc))


_POOL_LOGGERS = ("sqlalchemy.pool", "sqlalchemy.pool.base", "sqlalchemy.pool.impl.QueuePool",
                 "sqlalchemy.pool.impl.StaticPool", "sqlalchemy.pool.impl.NullPool")


def _quiet_pool_disconnects() -> None:
    for name in _POOL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropDisconnectTracebacks) for f in logger.filters):
            logger.addFilter(_DropDisconnectTracebacks())


def _first_line(exc: BaseException) -> str:
    """The innermost non-empty first line of ``exc``'s chain (the driver's own words), shortened,
    with any password masked."""
    text = ""
    for e in _chain(exc):
        details = getattr(e, "details", None)  # a gRPC error: its status details, not its repr
        line = str(details() if callable(details) else e).strip()
        if line:
            text = line.splitlines()[0]
    return mask_text(text[:200])
