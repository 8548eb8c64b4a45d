"""``python -m tuner dashboard`` for real: a server subprocess read over HTTP (studies, trials,
artifacts), and (marked ``browser``) Debian's headless Chromium rendering the study page."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _tiny import env_with_repo
from tuner.commands.dashboard import bind_warning, is_loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_study(tmp_path: Path, name: str = "dash-demo") -> tuple[str, Path]:
    """A small finished study with user attrs, intermediate values and uploaded artifacts."""
    import optuna

    from tuner.storage._artifacts import open_store, upload_trial_artifacts
    from tuner.storage import open_storage

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    study = optuna.create_study(storage=handle.storage, study_name=name, direction="maximize")
    study.set_user_attr("task", "sts")
    study.set_user_attr("zero_shot.all-MiniLM-L6-v2.stsb.dev", 0.8)
    store = open_store(tmp_path / "artifacts")
    for i in range(4):
        trial = study.ask()
        w = trial.suggest_float("w_cosent", 0.0, 1.0)
        pooling = trial.suggest_categorical("pooling", ["cls", "avg"])
        for step in (8, 16):
            trial.report(0.5 + 0.1 * w + step / 1000, step)
        trial.set_user_attr("scores.dev.stsb", 0.5 + 0.1 * w)
        trial.set_user_attr("scores.test.stsb", 0.45 + 0.1 * w)
        trial.set_user_attr("worker", "host:1")
        losses = [1.0 / (s + 1) + 0.05 * w for s in range(20)]
        upload_trial_artifacts(store, trial, losses=losses, parts={"cosent": losses, "angle": [x / 2 for x in losses]},
                               config={"w_cosent": w, "pooling": pooling}, title=f"trial {i}")
        study.tell(trial, 0.5 + 0.1 * w)
    handle.close()
    return url, tmp_path / "artifacts"


class Dashboard:
    def __init__(self, url: str, port: int, cwd: Path, extra: tuple = ()) -> None:
        self.port = port
        self.proc = subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", "--storage", url, "--port", str(port),
                                      *extra], cwd=cwd, env=env_with_repo(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited: {self.proc.stderr.read()[-2000:]}")
            try:
                self.get("/api/meta")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("dashboard did not start within 60s")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return response.read()

    def json(self, path: str):
        return json.loads(self.get(path))

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, self.proc.stdout.read(), self.proc.stderr.read()


@pytest.fixture
def dashboard(tmp_path):
    url, _ = make_study(tmp_path)
    server = Dashboard(url, free_port(), tmp_path)
    yield server
    server.stop()


@pytest.mark.slow
def test_dashboard_serves_studies_trials_and_artifacts_over_http(dashboard):
    meta = dashboard.json("/api/meta")
    assert meta["artifact_is_available"] is True
    summaries = dashboard.json("/api/studies")["study_summaries"]
    study = next(s for s in summaries if s["study_name"] == "dash-demo")
    detail = dashboard.json(f"/api/studies/{study['study_id']}")
    trials = detail["trials"]
    assert len(trials) == 4 and all(t["state"] == "Complete" for t in trials)
    first = trials[0]
    assert {p["name"] for p in first["params"]} == {"w_cosent", "pooling"}
    assert {a["key"] for a in first["user_attrs"]} >= {"scores.dev.stsb", "scores.test.stsb", "worker"}
    assert [v["step"] for v in first["intermediate_values"]] == [8, 16]
    artifacts = first["artifacts"]
    assert sorted(a["filename"] for a in artifacts) == ["config.json", "loss_curve.png"]
    png = next(a for a in artifacts if a["filename"] == "loss_curve.png")
    body = dashboard.get(f"/artifacts/{study['study_id']}/{first['trial_id']}/{png['artifact_id']}")
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    config = next(a for a in artifacts if a["filename"] == "config.json")
    assert "w_cosent" in json.loads(dashboard.get(f"/artifacts/{study['study_id']}/{first['trial_id']}/{config['artifact_id']}"))
    html = dashboard.get("/dashboard").decode()
    assert "<html" in html.lower()
    code, out, err = dashboard.stop()
    assert code == 0
    assert f"http://127.0.0.1:{dashboard.port}/dashboard" in out and "warning" not in err


def test_dashboard_binding_rules_and_missing_storage(tmp_path, capsys):
    from tuner.cli import main

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert bind_warning("127.0.0.1") is None
    assert "exposes it to the network" in bind_warning("0.0.0.0")
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'no.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "no.db").exists()


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


@pytest.mark.browser
@pytest.mark.slow
def test_headless_chromium_renders_the_study_page(dashboard, tmp_path):
    exe = chromium()
    study_id = next(s["study_id"] for s in dashboard.json("/api/studies")["study_summaries"]
                    if s["study_name"] == "dash-demo")
    shot = tmp_path / "dashboard.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
             "--window-size=1400,900", "--virtual-time-budget=15000", "--hide-scrollbars"]
    url = f"{dashboard.base}/dashboard/studies/{study_id}"
    subprocess.run([exe, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert png_size(shot) == (1400, 900)
    dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "dash-demo" in dom  # the React app rendered the study from the API
    out_dir = os.environ.get("TUNER_SCREENSHOT_DIR")
    if out_dir:
        shutil.copy(shot, Path(out_dir) / "dashboard.png")
