"""``tuner dashboard``'s login: the WSGI wrapper (no, wrong and right credentials; constant-time
compare), where the token comes from, the refusal to serve beyond loopback without one, a real
server over HTTP and HTTPS, and (marked ``browser``) headless Chromium asked for the login and
shown the study after it."""
from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

import tuner.commands.dashboard as dashboard_module
from _tiny import load_script
from test_dashboard import Dashboard, chromium, free_port, make_study, png_size
from tuner.commands.dashboard import REALM, TokenAuth, bind_problem, read_token, tls_context
from tuner.errors import TunerError

TOKEN = "t0k3n-for-the-tests-0123456789"
REPO = Path(__file__).resolve().parents[2]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(app, authorization: "str | None" = None, accept: str = "*/*") -> tuple[str, dict, bytes]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/studies", "HTTP_ACCEPT": accept}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def inner(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the studies"]


# --------------------------------------------------------------------------------------------
# The wrapper


def test_no_credentials_get_401_with_a_basic_challenge_and_never_reach_the_app():
    calls = []
    app = TokenAuth(lambda e, s: calls.append(e) or inner(e, s), TOKEN)
    status, headers, body = call(app)
    assert status.startswith("401")
    assert headers["WWW-Authenticate"].startswith(f'Basic realm="{REALM}"')
    assert headers["Cache-Control"] == "no-store" and int(headers["Content-Length"]) == len(body)
    assert b"the studies" not in body and calls == []
    status, headers, body = call(app, accept="text/html,application/xhtml+xml")  # a browser
    assert status.startswith("401") and headers["Content-Type"].startswith("text/html") and b"login required" in body


@pytest.mark.parametrize("authorization", [
    basic("anyone", "wrong-token-wrong-token"),
    basic("anyone", TOKEN[:-1]),
    basic("anyone", TOKEN + "x"),
    basic(TOKEN, ""),                     # the token as user name is not the password
    "Basic " + base64.b64encode(TOKEN.encode()).decode(),  # no colon
    "Basic not*base64",
    "Bearer wrong-token-wrong-token",
    f"Token {TOKEN}",
    TOKEN,
    "",
    "Basic ",
    "Bearer ",
])
def test_wrong_credentials_get_401(authorization):
    status, _, body = call(TokenAuth(inner, TOKEN), authorization)
    assert status.startswith("401") and body != b"the studies"


@pytest.mark.parametrize("authorization", [
    basic("tuner", TOKEN), basic("", TOKEN), basic("someone", TOKEN),
    f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  Basic {base64.b64encode(('x:' + TOKEN).encode()).decode()}  ",
])
def test_right_credentials_reach_the_app(authorization):
    status, _, body = call(TokenAuth(inner, TOKEN), authorization)
    assert status == "200 OK" and body == b"the studies"


def test_the_token_is_compared_in_constant_time(monkeypatch):
    compared = []

    def spy(a, b):
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(dashboard_module.hmac, "compare_digest", spy)
    app = TokenAuth(inner, TOKEN)
    assert call(app, basic("u", TOKEN))[0] == "200 OK"
    assert call(app, "Bearer nope-nope-nope-nope")[0].startswith("401")
    assert compared == [(TOKEN.encode(), TOKEN.encode()), (b"nope-nope-nope-nope", TOKEN.encode())]


def test_an_empty_token_is_refused():
    with pytest.raises(ValueError):
        TokenAuth(inner, "")


# --------------------------------------------------------------------------------------------
# Where the token comes from; binding rules


def test_token_from_file_then_file_variable_then_variable(tmp_path, monkeypatch):
    for name in ("TUNER_DASHBOARD_TOKEN", "TUNER_DASHBOARD_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert read_token() is None
    monkeypatch.setenv("TUNER_DASHBOARD_TOKEN", "from-the-variable-123")
    assert read_token() == "from-the-variable-123"
    (tmp_path / "env.token").write_text("from-the-file-variable\n")
    monkeypatch.setenv("TUNER_DASHBOARD_TOKEN_FILE", str(tmp_path / "env.token"))
    assert read_token() == "from-the-file-variable"
    (tmp_path / "flag.token").write_text(f"  {TOKEN}\n")
    assert read_token(tmp_path / "flag.token") == TOKEN


@pytest.mark.parametrize("content,words", [("", "is empty"), ("short", "has 5 characters"),
                                           ("two words in a line here", "spaces"), (None, "cannot read")])
def test_unusable_tokens_are_one_line_errors(tmp_path, monkeypatch, content, words):
    monkeypatch.delenv("TUNER_DASHBOARD_TOKEN_FILE", raising=False)
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TunerError) as err:
        read_token(path)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_binding_beyond_loopback_needs_a_token_and_warns_without_tls():
    assert bind_problem("127.0.0.1", False, False, False) == (None, None)
    assert bind_problem("::1", True, False, False) == (None, None)
    error, warning = bind_problem("0.0.0.0", False, False, False)
    assert "without a login" in error and "--insecure" in error and warning is None
    error, warning = bind_problem("0.0.0.0", False, False, True)
    assert error is None and "no login" in warning
    error, warning = bind_problem("10.0.0.5", True, False, False)
    assert error is None and "clear text" in warning
    assert bind_problem("10.0.0.5", True, True, False) == (None, None)


def test_cli_refuses_0000_without_a_token_in_one_line(tmp_path, capsys, monkeypatch):
    from tuner.cli import main

    for name in ("TUNER_DASHBOARD_TOKEN", "TUNER_DASHBOARD_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    url, _ = make_study(tmp_path)
    assert main(["dashboard", "--storage", url, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "without a login" in err, err
    # --insecure gets past the refusal (and then stops at the missing storage, so nothing is served)
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'no.db'}", "--host", "0.0.0.0", "--insecure"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["dashboard", "--storage", url, "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "--tls-key" in capsys.readouterr().err
    assert "--token" not in {a for action in _dashboard_parser()._actions for a in action.option_strings}


def _dashboard_parser():
    from tuner.cli import build_parser

    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "dashboard" in a.choices)
    return sub.choices["dashboard"]


# --------------------------------------------------------------------------------------------
# A real server


def get(url: str, authorization: "str | None" = None, context: "ssl.SSLContext | None" = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class TokenDashboard(Dashboard):
    """test_dashboard's server, started with a token (and TLS when ``context`` is given)."""

    def __init__(self, url, port, cwd, extra=(), context=None):
        self.context = context
        self.scheme = "https" if context else "http"
        super().__init__(url, port, cwd, extra)
        self.base = f"{self.scheme}://127.0.0.1:{port}"

    def get(self, path: str) -> bytes:  # used by Dashboard's start-up poll: any answer means it listens
        status, _, body = get(f"{self.scheme}://127.0.0.1:{self.port}{path}", context=self.context)
        return body


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "dashboard.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.slow
def test_served_dashboard_asks_for_the_token_and_serves_with_it(tmp_path, token_file):
    url, _ = make_study(tmp_path)
    server = TokenDashboard(url, free_port(), tmp_path, ("--token-file", str(token_file)))
    try:
        status, headers, _ = get(server.base + "/api/studies")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
        assert get(server.base + "/api/studies", basic("x", "wrong-wrong-wrong-wrong"))[0] == 401
        status, _, body = get(server.base + "/api/studies", basic("anyone", TOKEN))
        assert status == 200 and b"dash-demo" in body
        assert get(server.base + "/dashboard", f"Bearer {TOKEN}")[0] == 200
    finally:
        code, out, err = server.stop()
    assert code == 0 and "login: any user name, the token as password" in out and TOKEN not in out + err


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.slow
def test_tls_serves_https_only_and_the_login_works_over_it(tmp_path, token_file):
    cert, key = _self_signed(tmp_path)
    assert isinstance(tls_context(str(cert), str(key)), ssl.SSLContext)
    with pytest.raises(TunerError, match="cannot load --tls-cert"):
        tls_context(str(key), str(key))
    context = ssl.create_default_context(cafile=str(cert))
    url, _ = make_study(tmp_path)
    server = TokenDashboard(url, free_port(), tmp_path, ("--token-file", str(token_file), "--tls-cert", str(cert),
                                                         "--tls-key", str(key)), context=context)
    try:
        assert get(server.base + "/api/studies", context=context)[0] == 401
        status, _, body = get(server.base + "/api/studies", basic("anyone", TOKEN), context=context)
        assert status == 200 and b"dash-demo" in body
        with pytest.raises(OSError):  # plain HTTP to the HTTPS port gets no page
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/studies", timeout=10).read()
        assert get(server.base + "/api/studies", f"Bearer {TOKEN}", context=context)[0] == 200  # still serving
    finally:
        code, out, _ = server.stop()
    assert code == 0 and f"https://127.0.0.1:{server.port}/dashboard" in out


# --------------------------------------------------------------------------------------------
# A real browser


@pytest.fixture(scope="module")
def screenshots() -> ModuleType:
    return load_script("dashboard_screenshot")


@pytest.mark.browser
@pytest.mark.slow
def test_headless_chromium_is_asked_for_the_login_and_shows_the_study_after_it(tmp_path, token_file, screenshots):
    exe = chromium()
    url, _ = make_study(tmp_path)
    server = TokenDashboard(url, free_port(), tmp_path, ("--token-file", str(token_file)))
    try:
        with screenshots.DevTools(exe, tmp_path / "chrome") as tools:
            refused = screenshots.visit(tools, f"{server.base}/dashboard", wait_for="login required")
            wrong = screenshots.visit(tools, f"{server.base}/dashboard", login=("me", "not-the-token-at-all"),
                                      wait_for="login required", settle=0)
            shown = screenshots.visit(tools, f"{server.base}/dashboard/studies/1", login=("me", TOKEN),
                                      wait_for="dash-demo")
    finally:
        server.stop()
    # without credentials: HTTP 401 and the browser's login prompt (an auth challenge for the realm)
    assert refused.status == 401 and refused.headers["www-authenticate"].startswith('Basic realm="tuner dashboard"')
    assert [(c["scheme"], c["realm"]) for c in refused.challenges] == [("basic", REALM)]
    assert "login required" in refused.text and "dash-demo" not in refused.text
    assert wrong.status == 401 and len(wrong.challenges) >= 2  # asked again after the wrong token
    # with the token typed into the prompt: the study page, rendered from the API calls it makes
    assert shown.status == 200 and "dash-demo" in shown.text, shown.text[:500]
    for page, name in ((refused, "login.png"), (shown, "study.png")):
        (tmp_path / name).write_bytes(page.png)
        assert png_size(tmp_path / name) == screenshots.SIZE
    assert len(shown.png) > 20_000  # a rendered page, not a blank one
