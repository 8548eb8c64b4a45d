"""Helpers for the study/service/storage/dashboard tests.

- tiny study files (grid and TPE) over the tiny data dir and the tiny random-init BERT of conftest;
- a *fake-objective worker* (``python tests/_tiny.py worker ...``): the real
  :class:`tuner.service._study_service.StudyService` loop with an objective that only sleeps, so the
  exactly-once / retry / heartbeat / signal logic is tested with several processes in seconds
  (no torch import);
- database servers: reachable or skipped (failed under CI).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TUNER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TUNER_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as module ``name`` (registered in ``sys.modules``, which its
    dataclasses look their module up in)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def poll(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> object:
    """``predicate()``'s first truthy value within ``timeout`` seconds, else None (checked once more at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate() or None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def env_with_repo(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def write_grid_study(folder: Path, name: str, model_dir: Optional[Path], data_dir: Path,
                     losses: tuple = ("cos_mse", "cosent", "cosent+ibn+angle"), datasets: tuple = ("stsb", "sickr"),
                     models: Optional[list[str]] = None, max_retries: int = 2, extra: str = "") -> Path:
    model_list = models or [str(model_dir)]
    text = f'''
name = "{name}"
description = "tiny grid for tests"
task = "sts"
models = {model_list!r}
data_dir = "{data_dir}"
sampler = "grid"
protocol = "seed"
max_retries = {max_retries}
{extra}
[data]
datasets = {list(datasets)!r}

[budget]
epochs = 1

[train]
batch_size = 8
max_seq_length = 32
pooling = "cls"

[grid]
losses = {list(losses)!r}
'''.replace("'", '"')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def write_tpe_study(folder: Path, name: str, model_dir: Optional[Path], data_dir: Path, n_trials: int = 4,
                    pruner: str = "none", models: Optional[list[str]] = None) -> Path:
    model_list = models or [str(model_dir)]
    text = f'''
name = "{name}"
task = "sts"
models = {model_list!r}
data_dir = "{data_dir}"
sampler = "tpe"
pruner = "{pruner}"
n_trials = {n_trials}
max_retries = 1

[data]
train = ["stsb"]

[budget]
epochs = 1
eval_every = 2

[train]
batch_size = 8
max_seq_length = 32

[search]
w_cosent = [0.0, 1.0]
w_ibn = {{ choices = [0, 1] }}
tau_cosent = [5.0, 50.0]
'''.replace("'", '"')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def toml_dump(raw: dict) -> str:
    """TOML text of ``raw`` (the exporter's writer), checked to read back the same."""
    import tomllib

    from tuner.exporter.leaderboard import toml_dumps

    text = toml_dumps(raw)
    assert tomllib.loads(text) == raw
    return text


# --------------------------------------------------------------------------------------------
# database servers


def server_up(url: str) -> bool:
    host, port = ("127.0.0.1", 5432) if url.startswith("postgres") else ("127.0.0.1", 3306)
    try:
        rest = url.split("@", 1)[1].split("/", 1)[0]
        host, _, p = rest.partition(":")
        port = int(p) if p else port
    except (IndexError, ValueError):
        pass
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(url: str) -> None:
    import pytest

    if server_up(url):
        return
    from tuner.storage import mask_url

    message = f"database server for {mask_url(url)} is not reachable"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the PostgreSQL/MariaDB tests; .ci/run starts the servers)")
    pytest.skip(message + " (skipped outside CI)")


# --------------------------------------------------------------------------------------------
# fake-objective workers


def start_fake_worker(study: Path, storage: str, index: int, sleep: float = 0.2, fail_losses: str = "",
                      interval: int = 1, grace: int = 3, max_trials: Optional[int] = None) -> subprocess.Popen:
    args = [sys.executable, str(Path(__file__).resolve()), "worker", "--study", str(study), "--storage", storage,
            "--index", str(index), "--sleep", str(sleep), "--fail-losses", fail_losses,
            "--interval", str(interval), "--grace", str(grace)]
    if max_trials is not None:
        args += ["--max-trials", str(max_trials)]
    return subprocess.Popen(args, env=env_with_repo(), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_all(procs: list, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            out = "\n".join((q.stdout.read() if q.stdout else "") for q in procs)
            raise AssertionError(f"workers did not finish within {timeout}s:\n{out[-4000:]}")
    return codes


def _fake_worker_main(argv: Optional[list[str]] = None) -> int:
    sys.path.insert(0, str(REPO))
    from tuner.service._study_service import StudyService, worker_label
    from tuner.storage import open_storage
    from tuner.study import load_spec

    ap = argparse.ArgumentParser()
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.2)
    ap.add_argument("--fail-losses", default="")
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--grace", type=int, default=3)
    ap.add_argument("--max-trials", type=int, default=None)
    args = ap.parse_args(argv)
    spec = load_spec(args.study)
    handle = open_storage(args.storage, heartbeat_interval=args.interval, grace_period=args.grace)
    service = StudyService(spec, handle)
    service.create_or_load()
    failing = set(filter(None, args.fail_losses.split(",")))

    def objective(trial, choice) -> float:
        trial.set_user_attr("worker", worker_label())
        trial.set_user_attr("loss", choice.loss)
        deadline = time.monotonic() + args.sleep
        while time.monotonic() < deadline:  # sleep in small steps so signals land mid-trial
            time.sleep(0.02)
        if choice.loss in failing:
            raise RuntimeError(f"injected failure for {choice.loss}")
        if spec.is_grid:
            value = float(len(choice.loss) + len(choice.train[0])) / 100.0
            for split in ("dev", "test"):  # what the real objective records (the exporter reads these)
                trial.set_user_attr(f"scores.{split}.{choice.train[0]}", value)
            return value
        return -((choice.weights["cosent"] - 0.3) ** 2)

    try:
        return service.run_worker(objective, worker_index=args.index, max_trials=args.max_trials,
                                  log=lambda s: print(s, flush=True))
    finally:
        handle.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        raise SystemExit(_fake_worker_main(sys.argv[2:]))
    raise SystemExit("usage: python tests/_tiny.py worker --study FILE --storage URL [...]")
