"""The dashboard login, photographed: docs/dashboard-login.png and docs/dashboard-logged-in.png.

    python scripts/dashboard_screenshot.py [--out docs]

Builds a small demo study in a temporary folder, serves it with ``python -m tuner dashboard`` and a
token (``$TUNER_DASHBOARD_TOKEN``), and drives headless Chromium over the DevTools protocol
(``--remote-debugging-pipe``: no extra Python package):

- without credentials: the HTTP status (401) and ``WWW-Authenticate`` header of the page, and a
  screenshot of what the browser shows instead of its login prompt -> ``dashboard-login.png``;
- answering the login prompt with any user name and the token as password: the study page once
  the study's name has rendered -> ``dashboard-logged-in.png``.

tests/commands/test_dashboard_login.py uses :class:`DevTools` and :func:`visit` the same way.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
STUDY = "sts-demo"
SIZE = (1280, 800)


def find_chromium() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class DevTools:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies
    out; JSON messages ended by NUL)."""

    def __init__(self, exe: str, profile: Path) -> None:
        to_browser, self._write = self._pipe()
        self._read, from_browser = self._pipe()

        def wire() -> None:  # in the child: the two pipe ends become fds 3 and 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen([exe, *flags], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=wire, pass_fds=(3, 4))
        os.close(to_browser)
        os.close(from_browser)
        self._next = 0
        self._replies: dict[int, "queue.Queue[dict]"] = {}
        self._lock = threading.Lock()
        self.events: "queue.Queue[dict]" = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    @staticmethod
    def _pipe() -> tuple[int, int]:
        """A pipe whose fds are 10 or above, so that dup2 onto 3 and 4 in the child overwrites neither."""
        r, w = os.pipe()
        high = (fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(r)
        os.close(w)
        return high

    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.events.put({"method": "closed"})
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    self._replies.setdefault(message["id"], queue.Queue()).put(message)
                else:
                    self.events.put(message)

    def post(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> int:
        """Send a command without waiting for its reply (Page.navigate waits on paused requests)."""
        with self._lock:
            self._next += 1
            ident = self._next
            self._replies.setdefault(ident, queue.Queue())
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        return ident

    def reply(self, ident: int, method: str = "a command", timeout: float = 60.0) -> dict:
        try:
            answer = self._replies[ident].get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {method} within {timeout:.0f}s") from None
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 60.0) -> dict:
        return self.reply(self.post(method, params, session), method, timeout)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._write, self._read):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "DevTools":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class Page:
    status: Optional[int]                       # the HTTP status of the document
    headers: dict[str, str] = field(default_factory=dict)  # its response headers (names lower-cased)
    challenges: list[dict] = field(default_factory=list)   # the login prompts the browser raised
    text: str = ""                              # document.body.innerText once rendered
    png: bytes = b""                            # a screenshot, SIZE pixels


def visit(tools: DevTools, url: str, login: Optional[tuple[str, str]] = None, wait_for: Optional[str] = None,
          timeout: float = 60.0, settle: float = 1.0) -> Page:
    """Open ``url`` in a new tab, answer the browser's login prompt (HTTP auth challenge) with
    ``login`` = (user, password) or cancel it (None, as a user who has no token), wait until the
    page's text holds ``wait_for`` (or its load event), and return the document's status and headers,
    the challenges, the text and a screenshot."""
    target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        for method in ("Network.enable", "Page.enable"):
            tools.send(method, session=session)
        tools.send("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]}, session=session)
        tools.send("Emulation.setDeviceMetricsOverride", {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1,
                                                          "mobile": False}, session=session)
        tools.post("Page.navigate", {"url": url}, session=session)
        page = Page(status=None)
        loaded = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = tools.events.get(timeout=0.25)
            except queue.Empty:
                event = {}
            if event.get("sessionId") == session:
                loaded = _handle(tools, session, event, page, login) or loaded
            if loaded:
                text = tools.send("Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''",
                                                       "returnByValue": True}, session=session)
                page.text = text.get("result", {}).get("value") or ""
                if wait_for is None or wait_for in page.text:
                    break
        time.sleep(settle)  # let charts finish their animation
        shot = tools.send("Page.captureScreenshot", {"format": "png"}, session=session)
        page.png = base64.b64decode(shot["data"])
        return page
    finally:
        tools.send("Target.closeTarget", {"targetId": target})


def _handle(tools: DevTools, session: str, event: dict, page: Page, login: Optional[tuple[str, str]]) -> bool:
    """React to one event of the tab; True once the page has loaded."""
    method, params = event["method"], event.get("params", {})
    if method == "Fetch.requestPaused":
        tools.post("Fetch.continueRequest", {"requestId": params["requestId"]}, session=session)
    elif method == "Fetch.authRequired":  # what opens the login prompt in a browser with a window
        page.challenges.append(params["authChallenge"])
        answer = ({"response": "ProvideCredentials", "username": login[0], "password": login[1]}
                  if login and len(page.challenges) == 1 else {"response": "CancelAuth"})  # asked again: give up
        tools.post("Fetch.continueWithAuth", {"requestId": params["requestId"], "authChallengeResponse": answer},
                   session=session)
    elif method == "Network.responseReceived" and params.get("type") == "Document":
        page.status = params["response"]["status"]
        page.headers = {k.lower(): v for k, v in params["response"]["headers"].items()}
    return method == "Page.loadEventFired"


# --------------------------------------------------------------------------------------------
# The demo


def demo_study(folder: Path, name: str = STUDY) -> str:
    """A small finished study (a loss weight and a pooling choice against a dev score) in ``folder``."""
    import random

    import optuna

    from tuner.storage import open_storage

    url = f"sqlite:///{folder / 'tuner.db'}"
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    rng = random.Random(0)
    study = optuna.create_study(storage=handle.storage, study_name=name, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        w = trial.suggest_float("w_cosent", 0.0, 1.0)
        pooling = trial.suggest_categorical("pooling", ["avg", "cls"])
        score = 0.78 + 0.05 * w - (0.02 if pooling == "cls" else 0.0) + rng.uniform(-0.01, 0.01)
        for step in (100, 200, 300):
            trial.report(score - 0.03 * (300 - step) / 100, step)
        trial.set_user_attr("scores.dev.stsb", round(score, 4))
        study.tell(trial, score)
    handle.close()
    return url


def serve(url: str, token: str, port: int, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "TUNER_DASHBOARD_TOKEN": token,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", "--storage", url, "--port", str(port)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "optuna-dashboard for" not in line:
        proc.kill()
        raise RuntimeError(f"the dashboard did not start: {line}{proc.stderr.read()[-2000:]}")
    return proc


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the two PNGs (default docs/)")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    exe = find_chromium()
    if exe is None:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc = serve(demo_study(folder), token, args.port, folder)
        try:
            with DevTools(exe, folder / "chrome") as tools:
                base = f"http://127.0.0.1:{args.port}/dashboard"
                login = visit(tools, base, wait_for="login required")
                study_url = f"http://127.0.0.1:{args.port}/dashboard/studies/1"
                shown = visit(tools, study_url, login=("tuner", token), wait_for=STUDY, settle=2.0)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    print(f"without credentials: HTTP {login.status}, WWW-Authenticate: {login.headers.get('www-authenticate')}, "
          f"login prompts: {login.challenges}")
    print(f"with the token: HTTP {shown.status}, login prompts: {len(shown.challenges)}, study shown: {STUDY in shown.text}")
    if login.status != 401 or not login.challenges or shown.status != 200 or STUDY not in shown.text:
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name, page in (("dashboard-login.png", login), ("dashboard-logged-in.png", shown)):
        (args.out / name).write_bytes(page.png)
        print(f"wrote {args.out / name} ({len(page.png) // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
