"""``grpc://host:port``: a client of ``python -m tuner storage-proxy`` (:mod:`tuner.storage._proxy`).

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
"""
from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import uuid
import warnings
from typing import Any, Iterator, Optional

import grpc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage  # noqa: F401 - optuna's storages first (its lazy imports)
from optuna.storages._grpc.auto_generated import api_pb2_grpc
from optuna.storages._grpc.client import GrpcClientCache
from optuna.storages._heartbeat import BaseHeartbeat

from tuner.errors import TunerError
from tuner.storage._retry import StorageUnavailable, call_with_retry, retrying_method
from tuner.storage._urls import mask_url, parse_grpc_url

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


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def loads(data: bytes) -> Any:
    return json.loads(data.decode("utf-8")) if data else {}


class TunerGrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC storage client with heartbeats, a study lock and retries (picklable)."""

    def __init__(self, *, host: str, port: int, heartbeat_interval: Optional[int] = None,
                 grace_period: Optional[int] = None) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ExperimentalWarning, message=r".*GrpcStorageProxy.*")
            super().__init__(host=host, port=port)

    def _setup(self) -> None:
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._channel = grpc.insecure_channel(f"{host}:{self._port}", options=CHANNEL_OPTIONS)
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)
        self._tuner = {m: self._channel.unary_unary(f"/{SERVICE}/{m}", request_serializer=dumps,
                                                    response_deserializer=loads) for m in METHODS}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_tuner", None)
        return state

    def _describe(self) -> str:
        return f"the storage proxy grpc://{self._host}:{self._port}"

    def url(self) -> str:
        return f"grpc://{self._host}:{self._port}"

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
        setattr(TunerGrpcStorage, _name, retrying_method(_base))


def open_grpc_storage(url: str, heartbeat_interval: Optional[int] = None,
                      grace_period: Optional[int] = None, ready_timeout: float = 10.0) -> Any:
    """Connect to the proxy at ``url`` and check it is a tuner storage-proxy; one-line TunerError if not."""
    host, port = parse_grpc_url(url)
    storage = TunerGrpcStorage(host=host, port=port, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    try:
        info = storage._tuner["Info"]({}, timeout=ready_timeout, wait_for_ready=True)
    except grpc.RpcError as exc:
        storage.close()
        code = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise TunerError(f"cannot open storage {url}: it is not a tuner storage-proxy (an Optuna proxy has no "
                             "study lock or heartbeats); start it with python -m tuner storage-proxy") from None
        detail = (exc.details() or str(code)).splitlines()[0][:200]
        raise TunerError(f"cannot open storage {url}: {code.name.lower()} ({mask_url(detail)}); check host and port, "
                         "and that python -m tuner storage-proxy is running there") from None
    _log.info("connected to storage proxy %s for %s", url, info.get("backend"))
    return storage
