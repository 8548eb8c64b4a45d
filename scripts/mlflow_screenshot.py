"""The MLflow UI of one tracked study, photographed: docs/results/mlflow/ui.png and its record run.json.

    python scripts/mlflow_screenshot.py [--study sts-grid-quick] [--workers 2] [--out docs/results/mlflow]

1. Runs a small real study with MLflow tracking into a local store: ``python -m tuner optimize --study
   sts-grid-quick --workers 2 --mlflow sqlite:///<tmp>/mlflow.db`` (all-MiniLM-L6-v2, the bundled model;
   STS-B and SICK-R from ../shared/data, 256 training pairs, 200-pair dev/test, 3 loss rows: 6 cells).
2. Reads the runs back with ``MlflowClient`` into ``run.json``: the parent run, each child run's
   status, params, dev/test scores and how many training-loss steps it logged.
3. Serves the store with ``mlflow server`` on 127.0.0.1 (its job runner off), opens the study's
   experiment page in headless Chromium (:class:`dashboard_screenshot.DevTools`), expands the
   parent run to show its trials, and saves the screenshot as ``ui.png`` (palette PNG, < 300 KB);
   then stops the server.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from dashboard_screenshot import DevTools, find_chromium  # noqa: E402

WIDTH = 1280  # pixels; the runs table is 720 high, the charts view 1120 (the loss curves too)
#: Clicks the expander of the parent run's row (MLflow 3.17's runs table folds child runs under it).
EXPAND = "(() => { const b = document.querySelector('.ag-row button.du-bois-light-btn-link'); if (b) b.click(); })()"
#: Closes the assistant side panel the UI opens on a first visit.
CLOSE_ASSISTANT = "(() => { const b = document.querySelector('button[aria-label=Close]'); if (b) b.click(); })()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_study(study: str, workers: int, folder: Path, uri: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tuner", "optimize", "--study", study, "--workers", str(workers),
                    "--storage", f"sqlite:///{folder / 'tuner.db'}", "--mlflow", uri, "--no-progress",
                    "--no-artifacts"], cwd=folder, env=env, check=True)
    return round(time.perf_counter() - start, 1)


def read_back(uri: str, study: str) -> dict[str, Any]:
    """What the store holds for ``study``, read with MlflowClient (the record of ui.png)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("tuner.role") == "study")
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: int(r.data.tags["tuner.trial"]))
    rows = []
    for r in children:
        steps = len(client.get_metric_history(r.info.run_id, "train_loss"))
        rows.append({"trial": int(r.data.tags["tuner.trial"]), "status": r.info.status,
                     "state": r.data.tags.get("tuner.state"), "worker": r.data.tags.get("tuner.worker"),
                     "params": {k: r.data.params[k] for k in ("model", "loss", "dataset") if k in r.data.params},
                     "metrics": {k: v for k, v in sorted(r.data.metrics.items()) if k.startswith("scores.")},
                     "train_loss_steps": steps,
                     "artifacts": sorted(f.path for f in client.list_artifacts(r.info.run_id))})
    return {"experiment_id": experiment.experiment_id, "parent": {"run_id": parent.info.run_id,
            "status": parent.info.status, "params": dict(parent.data.params)},
            "runs": len(runs), "children": rows}


def serve(uri: str, port: int, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(cwd / "server.log", "w"), start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    stop(proc)
    raise RuntimeError(f"mlflow server did not start: {(cwd / 'server.log').read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def small_png(png: bytes) -> bytes:
    """The screenshot as a 256-colour PNG (a UI is a few flat colours: a third of the size, same look)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def photograph(exe: str, base: str, study: str, profile: Path) -> dict[str, tuple[bytes, bool]]:
    """Screenshots of the runs table (the parent run expanded) and of the charts view: name -> (png, the
    trials were on the page)."""
    shots = {}
    with DevTools(exe, profile) as tools:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for name, url, height in (("ui.png", base, 720), ("ui-charts.png", f"{base}?compareRunsMode=CHART", 1120)):
            tools.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": height, "deviceScaleFactor": 1,
                                                              "mobile": False}, session=session)
            tools.send("Page.navigate", {"url": url}, session=session)
            shown, deadline = False, time.monotonic() + 180  # the UI's scripts take a while on 2 busy cores
            while time.monotonic() < deadline and not shown:
                time.sleep(1.0)
                text = _evaluate(tools, session, "document.body ? document.body.innerText : ''") or ""
                if study in text and "trial 0" not in text:
                    _evaluate(tools, session, EXPAND)  # the parent's row is folded: open it (the UI keeps it open)
                shown = "trial 0" in text
            _evaluate(tools, session, CLOSE_ASSISTANT)
            time.sleep(4.0)  # charts draw after the table
            png = base64.b64decode(tools.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"])
            shots[name] = (png, shown)
    return shots


def _evaluate(tools: DevTools, session: str, expression: str) -> Optional[Any]:
    result = tools.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    return result.get("result", {}).get("value")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="sts-grid-quick")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "mlflow")
    args = parser.parse_args(argv)
    exe = find_chromium()
    if exe is None:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from tuner.study import load_spec

    name = load_spec(args.study).name
    with tempfile.TemporaryDirectory(prefix="tuner-mlflow-ui-") as tmp:
        folder = Path(tmp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        wall = run_study(args.study, args.workers, folder, uri)
        record = read_back(uri, name)
        port = free_port()
        proc = serve(uri, port, folder)
        try:
            shots = photograph(exe, f"http://127.0.0.1:{port}/#/experiments/{record['experiment_id']}/runs", name,
                               folder / "chrome")
        finally:
            stop(proc)
    import mlflow

    record.update({"study": args.study, "workers": args.workers, "study_wall_s": wall, "mlflow": mlflow.__version__,
                   "command": f"python -m tuner optimize --study {args.study} --workers {args.workers} "
                              "--mlflow sqlite:///mlflow.db",
                   "trials_shown": {shot: shown for shot, (_, shown) in shots.items()}})
    args.out.mkdir(parents=True, exist_ok=True)
    for shot, (png, _) in shots.items():
        small = small_png(png)
        (args.out / shot).write_bytes(small)
        print(f"wrote {args.out / shot} ({len(small) // 1024} KB)")
    (args.out / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"run.json: {len(record['children'])} child runs, parent {record['parent']['status']}, trials shown in "
          f"the UI: {record['trials_shown']}")
    return 0 if all(record["trials_shown"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
