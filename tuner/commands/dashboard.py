"""``tuner dashboard``: optuna-dashboard on the study storage, with the trials' artifacts.

Bound to 127.0.0.1 unless ``--host`` says otherwise (the dashboard has no authentication and can
edit studies, so binding to another address prints a warning).
"""
from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _make

from tuner.commands.common import is_loopback, positive_int
from tuner.errors import TunerError
from tuner.storage._artifacts import open_store, resolve_artifacts_dir
from tuner.storage import open_storage

__all__ = ["bind_warning", "build_app", "is_loopback", "make_server", "register"]


def bind_warning(host: str) -> "str | None":
    if is_loopback(host):
        return None
    return (f"warning: the dashboard has no login and can change studies; binding to {host} exposes it to the "
            "network (use --host 127.0.0.1 and an SSH tunnel instead)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve optuna-dashboard on the study storage",
                       description="Serve optuna-dashboard for every study in the storage, with the trials' "
                                   "artifacts (loss curve, config). Listens on 127.0.0.1 by default.")
    p.add_argument("--storage", default=None, help="storage URL (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=8080, help="port (default 8080; 0 is not allowed)")
    p.add_argument("--artifacts", default=None,
                   help="artifacts folder (default: <db folder>/artifacts for SQLite, ./artifacts otherwise)")
    p.set_defaults(func=run)


def make_server(app: Any, host: str, port: int) -> Any:
    """A threaded wsgiref server that does not log every request."""

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    if ":" in host:
        Server.address_family = socket.AF_INET6
    return _make(host, port, app, server_class=Server, handler_class=Quiet)


def build_app(url: str, artifacts: Any = None) -> tuple[Any, Any]:
    from optuna_dashboard import wsgi


    handle = open_storage(url, heartbeat_interval=None, grace_period=None, must_exist=True)
    folder = resolve_artifacts_dir(handle.url, artifacts)
    store = open_store(folder) if folder.is_dir() else None
    return wsgi(handle.storage, artifact_store=store), handle


def run(args: argparse.Namespace) -> int:
    app, handle = build_app(args.storage, args.artifacts)
    warning = bind_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        raise TunerError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another --port "
                         "or stop the program using it") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"optuna-dashboard for {handle.masked} at http://{host}:{server.server_port}/dashboard (Ctrl-C to stop)",
          flush=True)
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        threading.Thread(target=server.shutdown, daemon=True).start()
        server.server_close()
        handle.close()
    return 0
