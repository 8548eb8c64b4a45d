"""``tuner dashboard``: optuna-dashboard on the study storage, with the trials' artifacts.

Bound to 127.0.0.1 unless ``--host`` says otherwise. optuna-dashboard has no login and can edit
studies, so a dashboard bound beyond loopback needs one: a *token* (``--token-file FILE``, else
``$TUNER_DASHBOARD_TOKEN_FILE``, else ``$TUNER_DASHBOARD_TOKEN``; never a command-line value, which
``ps`` would show). With a token, every request must carry it: HTTP Basic auth with any user name
and the token as password (what a browser's login prompt sends) or ``Authorization: Bearer TOKEN``
(:class:`TokenAuth`, a WSGI wrapper around optuna-dashboard's unchanged app). ``--tls-cert`` /
``--tls-key`` serve HTTPS, so the token does not cross the network in clear text. Without a token,
a non-loopback ``--host`` is refused (one line, exit 2) unless ``--insecure`` is given; a token
given on loopback is enforced too.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import os
import signal
import socket
import ssl
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _make

from tuner import _tokens as tokens
from tuner._tokens import MIN_TOKEN_CHARS
from tuner.commands.common import is_loopback, port_number
from tuner.errors import TunerError
from tuner.storage._artifacts import open_store, resolve_artifacts_dir
from tuner.storage import open_storage

__all__ = ["ENV_TOKEN", "ENV_TOKEN_FILE", "MIN_TOKEN_CHARS", "REALM", "TokenAuth", "bind_problem", "bind_warning",
           "build_app", "is_loopback", "make_server", "read_token", "register", "tls_context"]

ENV_TOKEN = "TUNER_DASHBOARD_TOKEN"
ENV_TOKEN_FILE = "TUNER_DASHBOARD_TOKEN_FILE"
REALM = "tuner dashboard"
_TLS_HANDSHAKE_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------
# The login


class TokenAuth:
    """WSGI middleware: pass a request to ``app`` only if it carries ``token``.

    Accepted: ``Authorization: Basic base64(user:token)`` (any user name; a browser asks for it
    when it gets the 401 below) and ``Authorization: Bearer token``. Anything else gets
    ``401 Unauthorized`` with ``WWW-Authenticate: Basic realm="tuner dashboard"``. Tokens are
    compared with :func:`hmac.compare_digest` (time independent of where they differ).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], token: str, realm: str = REALM) -> None:
        if not token:
            raise ValueError("TokenAuth needs a non-empty token")
        self.app = app
        self.realm = realm
        self._token = token.encode("utf-8")

    def authorized(self, header: str) -> bool:
        """Whether an ``Authorization`` header value carries the token."""
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            given = value.encode("utf-8", "replace")
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                return False
            _, colon, password = decoded.partition(b":")
            if not colon:
                return False
            given = password
        else:
            return False
        return hmac.compare_digest(given, self._token)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        html = "text/html" in environ.get("HTTP_ACCEPT", "")
        body = (_LOGIN_PAGE if html else _LOGIN_TEXT).encode("utf-8")
        start_response("401 Unauthorized", [
            ("WWW-Authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'),
            ("Content-Type", f"text/{'html' if html else 'plain'}; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ])
        return [body]


_LOGIN_TEXT = ("401 Unauthorized: this tuner dashboard needs a login: any user name, the dashboard token as password "
               "(or the header Authorization: Bearer TOKEN)\n")
# What a browser shows when its login prompt is cancelled (or, headless, instead of the prompt).
_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>tuner dashboard: login required</title>
<style>body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}main{max-width:34em;margin:12vh auto;
background:#fff;padding:2em 2.5em;border-radius:8px;box-shadow:0 2px 12px #0002}h1{font-size:1.4em;margin-top:0}
code{background:#eef;padding:.1em .3em;border-radius:3px}p{line-height:1.5;color:#333}</style></head><body><main>
<h1>tuner dashboard: login required</h1>
<p>This dashboard serves every study of its storage and can change them, so it asks for a login
(HTTP 401). Reload the page and give your browser's login prompt <b>any user name</b> and the
<b>dashboard token</b> as password: the contents of the server's <code>--token-file</code> or
<code>$TUNER_DASHBOARD_TOKEN</code>.</p>
<p>Scripts send <code>Authorization: Bearer TOKEN</code>.</p></main></body></html>
"""


def read_token(token_file: "str | os.PathLike[str] | None" = None) -> Optional[str]:
    """The dashboard token: from ``token_file`` (``--token-file``), else the file named by
    ``$TUNER_DASHBOARD_TOKEN_FILE``, else ``$TUNER_DASHBOARD_TOKEN``; None when none is set
    (:func:`tuner._tokens.read_token`: one line for an unreadable, empty, multi-word or short token)."""
    return tokens.read_token("dashboard", token_file, ENV_TOKEN_FILE, ENV_TOKEN)


def bind_problem(host: str, token: bool, tls: bool, insecure: bool) -> tuple[Optional[str], Optional[str]]:
    """``(error, warning)`` for serving on ``host``: beyond loopback a token is required (an error
    without one, a warning with ``--insecure``); a token without TLS is a warning (it travels in
    clear text)."""
    if is_loopback(host):
        return None, None
    if not token:
        if insecure:
            return None, bind_warning(host)
        return (f"dashboard --host {host} would serve every study to the network without a login; set "
                f"${ENV_TOKEN} or give --token-file FILE (and --tls-cert/--tls-key), bind --host 127.0.0.1 "
                "(and use an SSH tunnel), or pass --insecure to serve it anyway"), None
    if not tls:
        return None, (f"warning: the dashboard on {host} has a login but no TLS: the token crosses the network in "
                      "clear text; give --tls-cert FILE --tls-key FILE (or use an SSH tunnel)")
    return None, None


def bind_warning(host: str) -> "str | None":
    """The warning for a dashboard without a login bound to ``host`` (None on loopback)."""
    if is_loopback(host):
        return None
    return (f"warning: --insecure: the dashboard has no login and can change studies; binding to {host} exposes "
            f"it to the network (set ${ENV_TOKEN} or --token-file, or use --host 127.0.0.1 and an SSH tunnel)")


def tls_context(cert: Optional[str], key: Optional[str]) -> Optional[ssl.SSLContext]:
    """A server TLS context for ``--tls-cert``/``--tls-key`` (None when neither is given)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TunerError("give both --tls-cert FILE and --tls-key FILE (the certificate and its private key, PEM)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TunerError(f"cannot load --tls-cert {cert} / --tls-key {key} ({getattr(exc, 'strerror', None) or exc}); "
                         "give a PEM certificate and its unencrypted private key") from None
    return context


# --------------------------------------------------------------------------------------------
# The server


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve optuna-dashboard on the study storage",
                       description="Serve optuna-dashboard for every study in the storage, with the trials' "
                                   "artifacts (loss curve, config). Listens on 127.0.0.1 by default; another "
                                   "address needs a login token (or --insecure).")
    p.add_argument("--storage", default=None, help="storage URL (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8080, help="port (default 8080)")
    p.add_argument("--artifacts", default=None,
                   help="artifacts folder (default: <db folder>/artifacts for SQLite, ./artifacts otherwise)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help=f"require the token in FILE to log in (user name: any, password: the token) (default: "
                        f"${ENV_TOKEN_FILE}, else ${ENV_TOKEN}); needed for --host beyond loopback")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="serve HTTPS with this certificate (PEM, chain after it)")
    p.add_argument("--tls-key", default=None, metavar="FILE", help="the private key of --tls-cert (PEM, unencrypted)")
    p.add_argument("--insecure", action="store_true",
                   help="allow --host beyond loopback without a login (anyone reaching the port can change studies)")
    p.set_defaults(func=run)


def make_server(app: Any, host: str, port: int, tls: Optional[ssl.SSLContext] = None) -> Any:
    """A threaded wsgiref server that does not log every request; HTTPS with ``tls`` (the TLS
    handshake runs in the request's thread, so a slow client does not hold up the others)."""

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True

        def finish_request(self, request: Any, client_address: Any) -> None:
            if tls is None:
                return super().finish_request(request, client_address)
            request.settimeout(_TLS_HANDSHAKE_TIMEOUT_S)
            with tls.wrap_socket(request, server_side=True) as secure:
                secure.settimeout(None)
                super().finish_request(secure, client_address)

        def handle_error(self, request: Any, client_address: Any) -> None:
            exc = sys.exc_info()[1]
            if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
                return  # a client that spoke plain HTTP to HTTPS, or went away: not the server's problem
            super().handle_error(request, client_address)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    if ":" in host:
        Server.address_family = socket.AF_INET6
    server = _make(host, port, app, server_class=Server, handler_class=Quiet)
    if tls is not None:
        server.base_environ["HTTPS"] = "on"
        server.base_environ["wsgi.url_scheme"] = "https"
    return server


def build_app(url: str, artifacts: Any = None, token: Optional[str] = None) -> tuple[Any, Any]:
    """optuna-dashboard's WSGI app on the storage at ``url`` (behind :class:`TokenAuth` when a
    ``token`` is given) and the storage handle to close."""
    from optuna_dashboard import wsgi

    handle = open_storage(url, heartbeat_interval=None, grace_period=None, must_exist=True)
    folder = resolve_artifacts_dir(handle.url, artifacts)
    store = open_store(folder) if folder.is_dir() else None
    app = wsgi(handle.storage, artifact_store=store)
    return (TokenAuth(app, token) if token else app), handle


def run(args: argparse.Namespace) -> int:
    token = read_token(args.token_file)
    tls = tls_context(args.tls_cert, args.tls_key)
    error, warning = bind_problem(args.host, token is not None, tls is not None, args.insecure)
    if error:
        raise TunerError(error)
    app, handle = build_app(args.storage, args.artifacts, token)
    if warning:
        print(warning, file=sys.stderr)
    try:
        server = make_server(app, args.host, args.port, tls)
    except OSError as exc:
        handle.close()
        raise TunerError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another --port "
                         "or stop the program using it") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    scheme = "https" if tls else "http"
    login = " (login: any user name, the token as password)" if token else ""
    print(f"optuna-dashboard for {handle.masked} at {scheme}://{host}:{server.server_port}/dashboard{login} "
          "(Ctrl-C to stop)", flush=True)

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
