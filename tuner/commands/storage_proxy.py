"""``tuner storage-proxy``: serve a study database to workers over gRPC (``--storage grpc://host:port``).

One process holds the database connections for every worker (Optuna's gRPC storage proxy plus
tuner's study lock and heartbeats: :mod:`tuner.storage._proxy`). Bound to 127.0.0.1 unless
``--host`` says otherwise. A proxy that other machines reach is *locked*: TLS (``--tls-cert`` /
``--tls-key``; clients use ``grpcs://host:port`` with ``$TUNER_PROXY_CA``) and a shared token
(``--token-file`` or ``$TUNER_PROXY_TOKEN``, never a command-line value, which ``ps`` would show) on every
call. Binding another address than loopback without both is refused unless ``--insecure`` is given.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Optional

from tuner.commands.common import is_loopback, port_number, positive_int
from tuner.errors import TunerError
from tuner.storage import mask_url, resolve_url


def bind_problem(host: str, tls: bool, token: bool, insecure: bool) -> tuple[Optional[str], Optional[str]]:
    """``(error, warning)`` for serving on ``host``: a non-loopback address needs TLS and a token
    (an error without them, a warning with ``--insecure``)."""
    if is_loopback(host) or (tls and token):
        return None, None
    missing = " and ".join(what for what, have in (("without TLS", tls), ("without a token", token)) if not have)
    if insecure:
        return None, (f"warning: --insecure: the storage proxy on {host} serves every study to the network {missing}; "
                      "anyone who reaches the port can change studies")
    return (f"storage-proxy --host {host} would serve every study to the network {missing}; give --tls-cert FILE "
            "--tls-key FILE and a token ($TUNER_PROXY_TOKEN or --token-file FILE), bind --host 127.0.0.1 (and use an "
            "SSH tunnel), or pass --insecure to serve it anyway"), None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("storage-proxy", help="serve the study database to workers over gRPC (grpc://host:port)",
                       description="Serve a PostgreSQL/MySQL/SQLite study database over gRPC so that many workers "
                                   "share one process's database connections: workers, optimize, status, export and "
                                   "dashboard then take --storage grpc://HOST:PORT (grpcs://HOST:PORT with TLS). "
                                   "Listens on 127.0.0.1 by default; another address needs TLS and a token "
                                   "(or --insecure).")
    p.add_argument("--storage", default=None,
                   help="database URL to serve (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=13000, help="port, 1 to 65535 (default 13000)")
    p.add_argument("--threads", type=positive_int, default=32,
                   help="request threads, each with a database connection when busy (default 32)")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="serve TLS only with this certificate (PEM, chain after it); clients use grpcs://HOST:PORT "
                        "and $TUNER_PROXY_CA (the CA file that signed it)")
    p.add_argument("--tls-key", default=None, metavar="FILE", help="the private key of --tls-cert (PEM, unencrypted)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="require the token in FILE on every call (default: $TUNER_PROXY_TOKEN_FILE, else "
                        "$TUNER_PROXY_TOKEN; clients set one of them to the same token)")
    p.add_argument("--insecure", action="store_true",
                   help="allow --host other than loopback without TLS and a token (anyone reaching the port can "
                        "change every study)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.storage._grpc import read_token
    from tuner.storage._proxy import start_proxy

    url = resolve_url(args.storage)
    token = read_token(args.token_file, server=True)
    tls = args.tls_cert is not None or args.tls_key is not None
    error, warning = bind_problem(args.host, tls, token is not None, args.insecure)
    if error:
        raise TunerError(error)
    if warning:
        print(warning, file=sys.stderr)
    proxy = start_proxy(url, args.host, args.port, args.threads, token=token, tls_cert=args.tls_cert,
                        tls_key=args.tls_key)
    host = f"[{args.host}]" if ":" in args.host else args.host
    locked = ", token required" if token else ""
    print(f"storage proxy for {mask_url(url)} at {proxy.scheme}://{host}:{proxy.port}{locked} (Ctrl-C to stop)",
          flush=True)
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
