"""The storage proxy (``python -m tuner storage-proxy``): Optuna's gRPC storage proxy plus tuner's lock
and heartbeat service, in one process that alone talks to the database.

Two gRPC services share one server and one port:

- ``optuna.StorageService``: Optuna's own servicer (:func:`optuna.storages.run_grpc_proxy_server`'s),
  over ``get_storage(TunerRDBStorage)``: Optuna's write-through trial cache, and every database
  call retried through outages (:mod:`tuner.storage._rdb`) so a database restart behind the proxy
  only makes the clients' calls slower;
- ``tuner.TunerProxy`` (JSON messages, no generated code): ``Heartbeat`` / ``StaleTrials`` (Optuna's
  proxy does not carry heartbeats; tuner's service fails and re-runs the trials of dead workers
  with them) and ``TryLock`` / ``Unlock``, the study lock.

Why the lock is a lease served by the proxy
-------------------------------------------
Clients have no database connection, so they cannot take ``pg_advisory_lock`` / ``GET_LOCK``
themselves. Two other designs were rejected:

- a compare-and-set on Optuna records (a study system attr, or a dedicated trial's state): Optuna's
  storage API has no conditional write except WAITING -> RUNNING, study attrs are last-writer-wins,
  and a lock trial would show up in every study listing, export and sampler;
- a lock only in the proxy's memory: two proxies on one database, or a proxy client next to a
  direct ``postgresql://`` worker, would not exclude each other.

So ``TryLock`` takes the *database's* lock (:func:`tuner.storage._locks.named_lock`, the same one direct
workers take) inside the proxy and keeps it for the client under a lease: the client renews it
every ``lease/3`` seconds while its step runs (milliseconds, normally) and releases it with
``Unlock``. A client that dies or is cut off stops renewing and the lease expires after
``LOCK_LEASE_S`` seconds; a proxy that dies closes its database connections and the server frees
the lock at once. Either way a step may have been cut in half, exactly as when a direct worker
loses its database connection: the service's duplicate check and Optuna's refusal to finish a
trial twice keep every grid cell complete once (see :mod:`tuner.service._study_service`). ``TryLock`` never
waits (the client polls), so waiting clients never tie up the proxy's threads.

A locked proxy: TLS and a token
-------------------------------
With a token every call of both services must carry it (:class:`tuner.storage._guard.TokenCheck`); with
``--tls-cert/--tls-key`` the port speaks TLS only, through :class:`tuner.storage._guard.TlsFront`, and the
gRPC server listens on 127.0.0.1 only.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Optional

import grpc

from tuner.errors import TunerError
from tuner.storage._grpc import METHODS, SERVICE, dumps, loads
from tuner.storage._guard import TlsFront, TokenCheck, tls_context
from tuner.storage._locks import named_lock
from tuner.storage._open import StorageHandle, open_storage
from tuner.storage._retry import call_with_retry
from tuner.storage._urls import dialect_of

DEFAULT_PORT = 13000
DEFAULT_THREADS = 32
# The server accepts the clients' keepalive pings (tuner.storage._grpc.CHANNEL_OPTIONS).
# so_reuseport 0: a second proxy on a port in use fails instead of silently sharing it.
SERVER_OPTIONS = [("grpc.so_reuseport", 0), ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                  ("grpc.http2.max_ping_strikes", 0), ("grpc.max_receive_message_length", -1)]
_log = logging.getLogger(__name__)


@dataclass
class _Lease:
    token: str
    expires: float
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class LeaseLocks:
    """Database locks held by the proxy on behalf of its clients, each under a renewable lease."""

    def __init__(self, handle: StorageHandle) -> None:
        self.handle = handle
        self._mutex = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def try_lock(self, name: str, token: str, lease_s: float) -> bool:
        now = time.monotonic()
        with self._mutex:
            lease = self._leases.get(name)
            if lease is not None:
                if lease.token == token:  # renewal
                    lease.expires = now + lease_s
                    return True
                if lease.expires > now:
                    return False
                _log.warning("lock '%s': its holder stopped renewing for %.0fs (killed or cut off); released",
                             name, lease_s)
                self._drop(name)
            held = contextlib.ExitStack()
            try:
                held.enter_context(named_lock(self.handle, name, timeout=0.0))
            except TunerError:  # held by a direct database client or another proxy
                return False
            self._leases[name] = _Lease(token, now + lease_s, held)
            return True

    def unlock(self, name: str, token: str) -> bool:
        with self._mutex:
            lease = self._leases.get(name)
            if lease is None or lease.token != token:
                return False
            self._drop(name)
            return True

    def _drop(self, name: str) -> None:
        lease = self._leases.pop(name)
        try:
            lease.held.close()
        except Exception as exc:  # noqa: BLE001 - the server frees it with the connection
            _log.warning("releasing lock '%s' failed (%s); the database frees it with the connection", name, exc)

    def close(self) -> None:
        with self._mutex:
            for name in list(self._leases):
                self._drop(name)


class TunerProxyService:
    """``tuner.TunerProxy``: heartbeats, stale trials and the study lock for proxy clients."""

    def __init__(self, handle: StorageHandle) -> None:
        self.handle = handle
        self.locks = LeaseLocks(handle)

    def Info(self, request: dict, context: Any) -> dict:
        return {"backend": self.handle.masked, "lease_s": None}

    def Heartbeat(self, request: dict, context: Any) -> dict:
        self.handle.storage.record_heartbeat(int(request["trial_id"]))
        return {}

    def StaleTrials(self, request: dict, context: Any) -> dict:
        from optuna.storages import RDBStorage

        # RDBStorage's own query (database clock), with the client's grace period.
        view = SimpleNamespace(heartbeat_interval=1, grace_period=float(request["grace_s"]),
                               scoped_session=self.handle.storage.scoped_session)
        ids = call_with_retry(lambda: RDBStorage._get_stale_trial_ids(view, int(request["study_id"])),
                              describe=lambda: self.handle.masked)
        return {"trial_ids": ids}

    def TryLock(self, request: dict, context: Any) -> dict:
        return {"acquired": self.locks.try_lock(str(request["name"]), str(request["token"]),
                                                float(request["lease_s"]))}

    def Unlock(self, request: dict, context: Any) -> dict:
        return {"released": self.locks.unlock(str(request["name"]), str(request["token"]))}

    def handler(self) -> grpc.GenericRpcHandler:
        def wrap(fn: Callable[[dict, Any], dict]) -> Any:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=loads, response_serializer=dumps)

        return grpc.method_handlers_generic_handler(SERVICE, {m: wrap(getattr(self, m)) for m in METHODS})


def _bind_problem(host: str, port: int) -> Optional[str]:
    """Why ``host:port`` cannot be listened on (checked with a plain socket: gRPC's own bind error is a
    multi-line C-core log), or None."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return str(exc.strerror or exc)
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return str(exc.strerror or exc)
    return None


@dataclass
class ProxyServer:
    server: Any
    handle: StorageHandle
    service: TunerProxyService
    port: int
    front: Optional[TlsFront] = None  # TLS: the front on ``port``; the gRPC server is on 127.0.0.1 only
    token: bool = False  # every call needs the token

    @property
    def scheme(self) -> str:
        return "grpcs" if self.front is not None else "grpc"

    def stop(self, grace: Optional[float] = 2.0) -> None:
        if self.front is not None:
            self.front.stop()
        self.server.stop(grace).wait(grace)
        self.service.locks.close()
        self.handle.close()


def start_proxy(url: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, threads: int = DEFAULT_THREADS, *,
                token: Optional[str] = None, tls_cert: Optional[str] = None,
                tls_key: Optional[str] = None) -> ProxyServer:
    """Open the storage at ``url`` and serve it on ``host:port`` (port 0: any free port).

    ``token``: every call must carry it (:class:`TokenCheck`). ``tls_cert``/``tls_key``: serve TLS only
    (clients use ``grpcs://``) through a :class:`TlsFront`. Checking who may bind where is the CLI's job
    (:mod:`tuner.commands.storage_proxy`)."""
    import optuna
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    if dialect_of(url) == "grpc":
        raise TunerError("storage-proxy --storage must be a database URL (postgresql://, mysql://, sqlite:///), "
                         "not another proxy")
    if (tls_cert is None) != (tls_key is None):
        raise TunerError("give both --tls-cert FILE and --tls-key FILE (the server certificate and its private key), "
                         "or neither")
    context = tls_context(tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    problem = _bind_problem(host, port)
    if problem:
        raise TunerError(f"cannot listen on {host}:{port} ({problem}); choose another --port or --host")
    # heartbeat_interval set: RDBStorage's heartbeat methods need one (clients send their own grace)
    handle = open_storage(url, heartbeat_interval=1, grace_period=None,
                          engine_options={"pool_size": threads + 2, "max_overflow": 8})
    service = TunerProxyService(handle)
    peers: list[TlsFront] = []  # the front, once it exists: it knows the client behind each connection

    def peer_of(grpc_peer: str) -> str:
        return peers[0].peer_of(grpc_peer) if peers else grpc_peer.split(":", 1)[-1]

    interceptors = (TokenCheck(token, peer_of),) if token else ()
    server = grpc.server(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="proxy"), options=SERVER_OPTIONS,
                         interceptors=interceptors)
    api_pb2_grpc.add_StorageServiceServicer_to_server(
        OptunaStorageProxyService(optuna.storages.get_storage(handle.storage)), server)
    server.add_generic_rpc_handlers((service.handler(),))
    shown = f"[{host}]" if ":" in host else host
    bound = server.add_insecure_port("127.0.0.1:0" if context is not None else f"{shown}:{port}")
    if not bound:
        handle.close()
        raise TunerError(f"cannot listen on {host}:{port}; choose another --port or --host")
    front = None
    if context is not None:
        try:
            front = TlsFront(host, port, context, bound)
        except OSError as exc:
            handle.close()
            raise TunerError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host") from None
        peers.append(front)
    server.start()
    return ProxyServer(server, handle, service, front.port if front is not None else bound, front, bool(token))
