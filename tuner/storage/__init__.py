"""Where studies live: storage URLs, opening a storage, retries, cross-process locks, the gRPC proxy.

Modules (one concept each; the names below are the room's public surface)::

    _urls.py    which database a URL names, how it is printed (no optuna)
    _retry.py   retrying storage calls: lock errors a few times, a lost connection for a while
    _locks.py   a lock shared by every process of a study, on every machine
    _rdb.py     tuner's RDBStorage: every call retried; SQLite tuned for several workers
    _grpc.py    the client of ``python -m tuner storage-proxy`` (``grpc://host:port``)
    _guard.py   the locked proxy's doors: the token check on every call, the TLS front
    _proxy.py   the proxy server: Optuna's gRPC storage service plus tuner's locks and heartbeats
    _open.py    open_storage() -> StorageHandle, for any of the above
    _artifacts.py  trial artifacts (loss curve, config) in an artifact store beside the storage

Imports point down this list's dependency order: ``_urls`` <- ``_retry`` <- ``_locks`` / ``_rdb`` /
``_grpc`` <- ``_open`` <- ``_proxy``. ``_rdb`` (optuna) and ``_grpc`` (grpcio, an optional extra)
are imported when a storage is opened, not by ``import tuner.storage``.
"""
from tuner.storage._artifacts import (ENV_ARTIFACTS, open_store, resolve_artifacts_dir,
                                      upload_trial_artifacts)
from tuner.storage._locks import file_lock, named_lock, sqlite_lock_dir
from tuner.storage._open import (PG_CONNECT_ARGS, StorageConfigError, StorageHandle, check_heartbeat_settings,
                                 delete_study, open_storage)
from tuner.storage._retry import (DEFAULT_STORAGE_RETRY_S, ENV_STORAGE_RETRY, StorageUnavailable, call_with_retry,
                                  is_disconnect, is_transient, last_call_reconnected, retrying_method,
                                  storage_retry_seconds)
from tuner.storage._urls import (DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_URL, ENV_STORAGE,
                                 SQLITE_BUSY_TIMEOUT_S, default_artifacts_dir, dialect_of, mask_text, mask_url,
                                 parse_grpc_url, require_shared, resolve_url, sqlite_path)

__all__ = [
    "ENV_ARTIFACTS", "open_store", "resolve_artifacts_dir", "upload_trial_artifacts",
    "DEFAULT_GRACE_PERIOD", "DEFAULT_HEARTBEAT_INTERVAL", "DEFAULT_STORAGE_RETRY_S", "DEFAULT_URL", "ENV_STORAGE",
    "ENV_STORAGE_RETRY", "PG_CONNECT_ARGS", "SQLITE_BUSY_TIMEOUT_S", "StorageConfigError", "StorageHandle",
    "StorageUnavailable", "call_with_retry", "check_heartbeat_settings", "default_artifacts_dir", "delete_study",
    "dialect_of", "file_lock", "is_disconnect", "is_transient", "last_call_reconnected", "mask_text", "mask_url",
    "named_lock", "open_storage", "parse_grpc_url", "require_shared", "resolve_url", "retrying_method",
    "sqlite_lock_dir", "sqlite_path", "storage_retry_seconds",
]
