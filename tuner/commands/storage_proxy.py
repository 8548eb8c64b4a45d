"""``tuner storage-proxy``: serve a study database to workers over gRPC (``--storage grpc://host:port``).

One process holds the database connections for every worker (Optuna's gRPC storage proxy plus
tuner's study lock and heartbeats: :mod:`tuner.storage._proxy`). Bound to 127.0.0.1 unless
``--host`` says otherwise: the proxy has no authentication and can change every study.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from tuner.commands.common import positive_int
from tuner.storage import mask_url, resolve_url


def bind_warning(host: str) -> "str | None":
    from tuner.commands.common import is_loopback

    if is_loopback(host):
        return None
    return (f"warning: the storage proxy has no login and can change studies; binding to {host} exposes it to the "
            "network (use --host 127.0.0.1 and an SSH tunnel instead)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("storage-proxy", help="serve the study database to workers over gRPC (grpc://host:port)",
                       description="Serve a PostgreSQL/MySQL/SQLite study database over gRPC so that many workers "
                                   "share one process's database connections: workers, optimize, status, export and "
                                   "dashboard then take --storage grpc://HOST:PORT. Listens on 127.0.0.1 by default.")
    p.add_argument("--storage", default=None,
                   help="database URL to serve (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=13000, help="port (default 13000)")
    p.add_argument("--threads", type=positive_int, default=32,
                   help="request threads, each with a database connection when busy (default 32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.storage._proxy import start_proxy

    url = resolve_url(args.storage)
    warning = bind_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    proxy = start_proxy(url, args.host, args.port, args.threads)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"storage proxy for {mask_url(url)} at grpc://{host}:{proxy.port} (Ctrl-C to stop)", flush=True)
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not done.wait(1.0):
            pass
    finally:
        proxy.stop()
    return 0
