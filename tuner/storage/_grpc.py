"""``grpc://host:port`` / ``grpcs://host:port``: a client of ``python -m tuner storage-proxy`` (:mod:`tuner.storage._proxy`).

:class:`TunerGrpcStorage` is Optuna's :class:`~optuna.storages.GrpcStorageProxy` (every study and
trial call goes through Optuna's own proxy protocol) plus what tuner's service needs and Optuna's
proxy does not carry, served by a second gRPC service of the same proxy process
(``tuner.TunerProxy``, JSON messages):

- heartbeats: ``record_heartbeat`` / ``_get_stale_trial_ids`` (the proxy writes Optuna's heartbeat
  table with the database's clock, so hosts with skewed clocks agree on who is stale);
- the study lock (:meth:`TunerGrpcStorage.lock`): a *lease* held by the proxy on the client's
  behalf, backed by the database's own lock (see :mod:`tuner.storage._proxy` for why).

Every call is retried like an ``RDBStorage`` call (:func:`tuner.storage._retry.call_with_retry`): a proxy
that is down, restarting or cut off answers ``UNAVAILABLE``, which counts as a lost connection and
is retried for ``$TUNER_STORAGE_RETRY_S`` seconds. Optuna's return values and exceptions
(``KeyError``, ``UpdateFinishedTrialError``, ...) pass through unchanged.

A locked proxy (``storage-proxy --tls-cert/--tls-key`` and a token) takes ``grpcs://host:port``; the
client reads, from the environment (never the command line or the URL, so workers inherit them and
no ``ps`` shows them):

- ``$TUNER_PROXY_CA``: the CA file (PEM) that signed the proxy's certificate (default: the system's CAs);
- ``$TUNER_PROXY_TOKEN_FILE`` (a file holding the token) or ``$TUNER_PROXY_TOKEN``: sent on every call as
  ``authorization: Bearer <token>``.

A call the proxy refuses (no token, wrong token, plain text against TLS) and a TLS handshake that fails
(a certificate from a CA this client does not trust) are one-line :class:`TunerError` messages, never retried.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import threading
import time
import uuid
import warnings
from collections import namedtuple
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import grpc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage  # noqa: F401 - optuna's storages first (its lazy imports)
from optuna.storages._grpc.auto_generated import api_pb2_grpc
from optuna.storages._grpc.client import GrpcClientCache
from optuna.storages._heartbeat import BaseHeartbeat

from tuner import _tokens as tokens
from tuner._tokens import MIN_TOKEN_CHARS
from tuner.errors import TunerError
from tuner.storage._retry import StorageUnavailable, call_with_retry, retrying_method
from tuner.storage._urls import is_tls_url, mask_url, parse_grpc_url

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    from optuna.storages import GrpcStorageProxy

SERVICE = "tuner.TunerProxy"
METHODS = ("Info", "Heartbeat", "StaleTrials", "TryLock", "Unlock")
LOCK_LEASE_S = 30.0  # a lock whose holder stops renewing (killed, cut off) is free after this
RPC_TIMEOUT_S = 60.0  # tuner's own calls; a DB outage behind the proxy is retried by the proxy first
# Notice a dead connection (proxy host gone, network cut) in ~20 s instead of waiting forever.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.keepalive_time_ms", 10_000),
                   ("grpc.keepalive_timeout_ms", 10_000), ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.max_pings_without_data", 0)]
_log = logging.getLogger(__name__)

ENV_TOKEN = "TUNER_PROXY_TOKEN"
ENV_TOKEN_FILE = "TUNER_PROXY_TOKEN_FILE"
ENV_CA = "TUNER_PROXY_CA"
# What a locked proxy answers (status UNAUTHENTICATED) and the client turns into its own line.
REFUSED_NO_TOKEN = "no token"
REFUSED_WRONG_TOKEN = "wrong token"
REFUSED_PLAIN_TEXT = "this storage proxy serves TLS only"
_TOKEN_HINT = f"set ${ENV_TOKEN} or ${ENV_TOKEN_FILE} to the proxy's token"


def read_token(token_file: "str | os.PathLike[str] | None" = None, *, server: bool = False) -> Optional[str]:
    """The proxy token: from ``token_file`` (the proxy's ``--token-file``), else the file named by
    ``$TUNER_PROXY_TOKEN_FILE``, else ``$TUNER_PROXY_TOKEN``; None when none is set. ``server``: also
    require ``MIN_TOKEN_CHARS`` characters (:func:`tuner._tokens.read_token`)."""
    return tokens.read_token("proxy", token_file, ENV_TOKEN_FILE, ENV_TOKEN, min_chars=MIN_TOKEN_CHARS if server else None)


def read_ca() -> Optional[bytes]:
    """The CA certificates (PEM) named by ``$TUNER_PROXY_CA``; None (the system's CAs) when unset."""
    name = os.environ.get(ENV_CA, "").strip()
    if not name:
        return None
    try:
        data = Path(name).expanduser().read_bytes()
    except OSError as exc:
        raise TunerError(f"cannot read ${ENV_CA}={name} ({exc.strerror or exc}); set it to the CA file (PEM) that "
                         "signed the storage proxy's certificate") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TunerError(f"${ENV_CA}={name} holds no PEM certificate; set it to the CA file (PEM) that signed the "
                         "storage proxy's certificate")
    return data


_CallDetails = namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                                           "compression"))


class _BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of the channel (both services)."""

    def __init__(self, token: str) -> None:
        self._pair = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        metadata = list(details.metadata or []) + [self._pair]
        return continuation(_CallDetails(details.method, details.timeout, metadata, details.credentials,
                                         details.wait_for_ready, details.compression), request)


def refusal_message(url: str, details: Optional[str]) -> str:
    """The one line for a call the proxy at ``url`` refused (status UNAUTHENTICATED, ``details`` its reason)."""
    why = (details or "").strip()
    if why.startswith(REFUSED_PLAIN_TEXT):
        return (f"the storage proxy at {url} refused the connection: it serves TLS only; use "
                f"grpcs://{url.split('://', 1)[1]} (with ${ENV_CA} naming the CA file that signed its certificate)")
    if why == REFUSED_NO_TOKEN:
        return f"the storage proxy at {url} refused the call: no token was sent; {_TOKEN_HINT}"
    if why == REFUSED_WRONG_TOKEN:
        return f"the storage proxy at {url} refused the call: wrong token; {_TOKEN_HINT}"
    return f"the storage proxy at {url} refused the call ({why.splitlines()[0][:200] if why else 'unauthenticated'}); {_TOKEN_HINT}"


def _tls_problem(url: str, details: str) -> Optional[str]:
    """The one line for a TLS handshake that failed (``details``: gRPC's text), or None if it is not one."""
    text = details.lower()
    reason = details.rsplit("OPENSSL_internal:", 1)[-1].strip().splitlines()[0].removesuffix(": OK")[:160]
    ca = os.environ.get(ENV_CA, "").strip()
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        trusted = f"the CA in ${ENV_CA} ({ca})" if ca else f"a CA this machine trusts (${ENV_CA} is not set)"
        return (f"cannot open storage {url}: the proxy's TLS certificate is not signed by {trusted} ({reason}); set "
                f"${ENV_CA} to the CA file that signed the proxy's certificate")
    if "peer name" in text or ("hostname" in text and "certificate" in text):
        return (f"cannot open storage {url}: the proxy's TLS certificate does not name {parse_grpc_url(url)[0]} "
                f"({reason}); connect with a name or address its certificate lists")
    if "wrong_version_number" in text and is_tls_url(url):
        return (f"cannot open storage {url}: the proxy does not answer in TLS (WRONG_VERSION_NUMBER); use "
                f"grpc://{url.split('://', 1)[1]} if it was started without --tls-cert")
    if "wrong_version_number" in text or ("handshake" in text and ("ssl" in text or "tls" in text)):
        hint = f"use grpc://{url.split('://', 1)[1]} if the proxy was started without --tls-cert" \
            if is_tls_url(url) else "check the proxy's certificate and key"
        return f"cannot open storage {url}: the TLS handshake with the proxy failed ({reason}); {hint}"
    return None


def _refusals_as_errors(method: Callable) -> Callable:
    """``method`` with a refused call (UNAUTHENTICATED: the proxy's token changed) as a one-line TunerError."""
    @functools.wraps(method)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise TunerError(refusal_message(self.url(), exc.details())) from None
            raise
    return wrapped


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def loads(data: bytes) -> Any:
    return json.loads(data.decode("utf-8")) if data else {}


class TunerGrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC storage client with heartbeats, a study lock and retries (picklable)."""

    def __init__(self, *, host: str, port: int, tls: bool = False, heartbeat_interval: Optional[int] = None,
                 grace_period: Optional[int] = None) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self._tls = tls
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ExperimentalWarning, message=r".*GrpcStorageProxy.*")
            super().__init__(host=host, port=port)

    def _setup(self) -> None:
        # The token and the CA are read from the environment here (also when unpickled), never pickled.
        host = f"[{self._host}]" if ":" in self._host else self._host
        target = f"{host}:{self._port}"
        if getattr(self, "_tls", False):
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=read_ca()),
                                          options=CHANNEL_OPTIONS)
        else:
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        token = read_token()
        self._channel = grpc.intercept_channel(channel, _BearerToken(token)) if token else channel
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)
        self._tuner = {m: self._channel.unary_unary(f"/{SERVICE}/{m}", request_serializer=dumps,
                                                    response_deserializer=loads) for m in METHODS}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_tuner", None)
        return state

    def _describe(self) -> str:
        return f"the storage proxy {self.url()}"

    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'grpcs' if getattr(self, '_tls', False) else 'grpc'}://{host}:{self._port}"

    @_refusals_as_errors
    def call(self, method: str, **payload: Any) -> Any:
        """One ``tuner.TunerProxy`` call (not retried: callers wrap it)."""
        return self._tuner[method](payload, timeout=RPC_TIMEOUT_S)

    # BaseHeartbeat
    def record_heartbeat(self, trial_id: int) -> None:
        self.call("Heartbeat", trial_id=trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.heartbeat_interval is not None
        grace = self.grace_period or 2 * self.heartbeat_interval
        return list(self.call("StaleTrials", study_id=study_id, grace_s=grace)["trial_ids"])

    def get_heartbeat_interval(self) -> Optional[int]:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None

    def remove_session(self) -> None:  # what the service calls on an RDBStorage; nothing to do
        pass

    # the study lock
    def _try_lock(self, name: str, token: str) -> bool:
        return bool(call_with_retry(lambda: self.call("TryLock", name=name, token=token, lease_s=LOCK_LEASE_S),
                                    describe=self._describe)["acquired"])

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 600.0) -> Iterator[None]:
        """Exclusive lock ``name`` across every client of the proxy (and every direct database client:
        the proxy holds the database's lock for it). Renewed while held; see :mod:`tuner.storage._proxy`."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not self._try_lock(name, token):
            if time.monotonic() > deadline:
                raise TunerError(f"timed out after {timeout:.0f}s waiting for lock '{name}' on {self.url()}")
            # back off (with jitter) so hundreds of waiting clients do not flood the proxy with tries
            time.sleep(random.uniform(0.5, 1.0) * delay)
            delay = min(0.25, delay * 1.5)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(name, token, stop), daemon=True,
                                   name=f"lock-renew-{name}")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            try:
                released = call_with_retry(lambda: self.call("Unlock", name=name, token=token),
                                           describe=self._describe)["released"]
                if not released:
                    _log.warning("lock '%s' had expired before it was released (proxy restarted or this "
                                 "worker stalled); the step it guarded re-checks what it wrote", name)
            except StorageUnavailable:
                _log.warning("could not release lock '%s': the proxy is unreachable; its lease expires "
                             "by itself after %.0fs", name, LOCK_LEASE_S)

    def _renew(self, name: str, token: str, stop: threading.Event) -> None:
        while not stop.wait(LOCK_LEASE_S / 3):
            try:
                self.call("TryLock", name=name, token=token, lease_s=LOCK_LEASE_S)
            except Exception as exc:  # noqa: BLE001 - the release in lock() reports a lost lease
                _log.info("renewing lock '%s' failed: %s", name, exc)


for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
             "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
             "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
             "set_trial_param", "get_trial_id_from_study_id_trial_number", "set_trial_state_values",
             "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr", "get_trial",
             "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params", "get_trial_user_attrs",
             "get_trial_system_attrs", "record_heartbeat", "_get_stale_trial_ids"):
    _base = getattr(TunerGrpcStorage, _name, None)
    if _base is not None:
        setattr(TunerGrpcStorage, _name, _refusals_as_errors(retrying_method(_base)))


def open_grpc_storage(url: str, heartbeat_interval: Optional[int] = None,
                      grace_period: Optional[int] = None, ready_timeout: float = 10.0) -> Any:
    """Connect to the proxy at ``url`` (``grpc://`` or ``grpcs://``) and check it is a tuner storage-proxy
    that accepts this client; one-line TunerError if not. A proxy still starting is waited for up to
    ``ready_timeout`` seconds; a refusal or a failed TLS handshake is reported at once."""
    host, port = parse_grpc_url(url)
    storage = TunerGrpcStorage(host=host, port=port, tls=is_tls_url(url), heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    url = storage.url()
    deadline = time.monotonic() + ready_timeout
    while True:
        left = deadline - time.monotonic()
        try:
            # not wait_for_ready: a failed connection attempt answers at once, with gRPC's reason
            info = storage._tuner["Info"]({}, timeout=max(0.5, min(left, 5.0)))
            break
        except grpc.RpcError as exc:
            code, detail = exc.code(), exc.details() or str(exc.code())
            problem = _tls_problem(url, detail) if code == grpc.StatusCode.UNAVAILABLE else None
            waiting = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # down or slow
            if waiting and problem is None and deadline - time.monotonic() > 0:
                time.sleep(min(0.25, max(left, 0.0)))
                continue
            storage.close()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise TunerError(refusal_message(url, detail)) from None
            if problem is not None:
                raise TunerError(problem) from None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise TunerError(f"cannot open storage {url}: it is not a tuner storage-proxy (an Optuna proxy has no "
                                 "study lock or heartbeats); start it with python -m tuner storage-proxy") from None
            detail = detail.splitlines()[0][:200]
            also = "" if is_tls_url(url) else " (grpcs:// if it serves TLS)"
            raise TunerError(f"cannot open storage {url}: {code.name.lower()} ({mask_url(detail)}); check host and port, "
                             f"and that python -m tuner storage-proxy is running there{also}") from None
    _log.info("connected to storage proxy %s for %s", url, info.get("backend"))
    return storage
