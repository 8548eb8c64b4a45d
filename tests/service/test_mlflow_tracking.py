"""MLflow tracking (``--mlflow``, :mod:`tuner.service._tracking`), against real MLflow stores read back with
``MlflowClient``: an SQLite store with two workers, a lost tracking server, and ``mlflow server``."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _tiny import poll, unique, write_grid_study
from tuner.errors import TunerError
from tuner.service import _orchestrate as orchestrate
from tuner.service import _tracking as tracking
from tuner.storage import open_storage

mlflow = pytest.importorskip("mlflow", reason="the [mlflow] extra")
optuna = pytest.importorskip("optuna")
from mlflow import MlflowClient  # noqa: E402

LOSSES = ("cos_mse", "cosent", "cosent+ibn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runs_of(client: MlflowClient, study_name: str) -> tuple[object, list]:
    """(the study's parent run, its child runs), each read back from the store."""
    experiment = client.get_experiment_by_name(study_name)
    assert experiment is not None, f"no MLflow experiment '{study_name}'"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    assert len(parents) == 1, f"{len(parents)} parent runs"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1, "a run of the experiment is neither the parent nor its child"
    return parents[0], children


def stored_trials(url: str, name: str) -> list:
    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        return optuna.load_study(study_name=name, storage=handle.storage).get_trials()
    finally:
        handle.close()


def check_children(client: MlflowClient, children: list, trials: list, tmp: Path) -> None:
    """Each trial has one child run with its params, config, scores, per-step losses and artifacts."""
    by_number = {int(r.data.tags["tuner.trial"]): r for r in children}
    assert sorted(by_number) == sorted(t.number for t in trials)
    for t in trials:
        run = by_number[t.number]
        assert t.state.name == "COMPLETE"
        assert run.info.status == "FINISHED" and run.data.tags["tuner.state"] == "COMPLETE"
        assert run.data.params["loss"] == t.params["loss"] and run.data.params["dataset"] == t.params["dataset"]
        assert run.data.params["config.lr"] == str(t.user_attrs["config"]["lr"])
        assert run.data.params["config.pooling"] == t.user_attrs["config"]["pooling"]
        assert run.data.metrics["value"] == pytest.approx(t.value)
        scores = {k: v for k, v in t.user_attrs.items() if k.startswith("scores.")}
        assert {"scores.dev.stsb", "scores.test.stsb"} <= set(scores)
        for key, value in scores.items():
            assert run.data.metrics[key] == pytest.approx(value)
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, len(history) + 1))
        assert len(history) >= 2 and all(math.isfinite(m.value) for m in history)
        if "+" in t.params["loss"]:  # a combination: one curve per loss too
            assert len(client.get_metric_history(run.info.run_id, "train_loss.ibn")) == len(history)
        assert {f.path for f in client.list_artifacts(run.info.run_id)} >= {"config.json", "loss_curve.png"}
        record = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json", str(tmp))).read_text())
        assert record["trial"] == t.number and record["state"] == "COMPLETE" and record["params"] == t.params


# ------------------------------------------------------------------ no MLflow asked for, or a bad URI

def test_no_uri_means_no_tracking_and_off_overrides_the_environment(monkeypatch):
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    assert tracking.resolve_tracking_uri(None) is None
    monkeypatch.setenv(tracking.ENV_URI, "sqlite:///x.db")
    assert tracking.resolve_tracking_uri(None) == "sqlite:///x.db"
    assert tracking.resolve_tracking_uri("off") is None
    assert tracking.resolve_tracking_uri("http://h:5000") == "http://h:5000"


def test_without_mlflow_installed_the_flag_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TunerError, match=r"--mlflow sqlite:///m.db: MLflow is not installed; pip install 'tuner\[mlflow\]'"):
        tracking.resolve_tracking_uri("sqlite:///m.db")
    monkeypatch.setenv(tracking.ENV_URI, "http://u:secret@h:5000")
    with pytest.raises(TunerError, match=r"\$MLFLOW_TRACKING_URI http://u:\*\*\*@h:5000") as err:
        tracking.resolve_tracking_uri(None)
    assert "secret" not in str(err.value)


def test_a_uri_mlflow_refuses_fails_before_the_study_is_created(tmp_path, tiny_data_dir, tiny_model_dir):
    db = tmp_path / "tuner.db"
    path = write_grid_study(tmp_path, unique("bad-mlflow"), tiny_model_dir, tiny_data_dir, losses=("cosent",),
                            datasets=("stsb",))
    with pytest.raises(TunerError, match=r"--mlflow nosuchscheme://x: MLflow cannot use it"):
        orchestrate.run_study(path, f"sqlite:///{db}", mlflow="nosuchscheme://x", progress=False)
    assert not db.exists()


def test_flat_params_and_the_artifact_root_beside_an_sqlite_store(tmp_path):
    assert tracking.flat_params({"weights": {"cosent": 1.0, "ibn": 0.0}, "train": ["stsb"], "pooling": None},
                                "config.") == {"config.weights.cosent": "1.0", "config.weights.ibn": "0.0",
                                               "config.train": '["stsb"]', "config.pooling": "null"}
    assert tracking.local_artifact_root(f"sqlite:///{tmp_path}/m.db") == (tmp_path / "mlartifacts").as_uri()
    assert tracking.local_artifact_root("http://127.0.0.1:5000") is None


# ------------------------------------------------------------------ one process, each way a trial ends

def test_each_way_a_trial_ends_gives_its_run_status(tmp_path):
    """A real optuna study and a real SQLite MLflow store; the objective returns, prunes, fails, or gives NaN."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = optuna.create_study(study_name=unique("ends"), direction="maximize")
    tracker = tracking.StudyTracker(uri, study.study_name, contextlib.nullcontext, about={"task": "sts"})

    def objective(trial, choice):
        trial.suggest_categorical("loss", ["cosent"])
        if choice == "prune":
            raise optuna.TrialPruned("pruned at step 2")
        if choice == "fail":
            trial.set_user_attr("failure", "out_of_memory: CUDA out of memory")
            raise RuntimeError("CUDA out of memory")
        trial.set_user_attr("scores.dev.stsb", 0.5)
        return float("nan") if choice == "nan" else 0.75

    tracked = tracker.track(objective)
    outcomes = {}
    for choice in ("ok", "prune", "fail", "nan"):
        trial = study.ask()
        try:
            outcomes[choice] = tracked(trial, choice)
        except (optuna.TrialPruned, RuntimeError) as exc:
            outcomes[choice] = type(exc).__name__
    assert outcomes["ok"] == 0.75 and outcomes["prune"] == "TrialPruned" and outcomes["fail"] == "RuntimeError"
    client = MlflowClient(uri)
    parent, children = runs_of(client, study.study_name)
    assert study.user_attrs[tracking.PARENT_ATTR]["run_id"] == parent.info.run_id
    assert parent.data.params["task"] == "sts"
    got = {int(r.data.tags["tuner.trial"]): (r.info.status, r.data.tags["tuner.state"]) for r in children}
    assert got == {0: ("FINISHED", "COMPLETE"), 1: ("KILLED", "PRUNED"), 2: ("FAILED", "FAIL"), 3: ("KILLED", "PRUNED")}
    failed = next(r for r in children if r.data.tags["tuner.trial"] == "2")
    assert failed.data.tags["tuner.failure"] == "out_of_memory: CUDA out of memory"
    assert [(m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "value")] == [(0, 0.75)]
    # a second process of the same study (another worker) finds the parent run through the study's attr
    other = tracking.StudyTracker(uri, study.study_name, contextlib.nullcontext)
    assert other.ensure_parent(study) == parent.info.run_id
    tracker.finish_study("FINISHED")
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("server", ["refuses", "never answers"])
def test_a_lost_tracking_server_is_one_warning_per_trial_and_the_trial_goes_on(server, caplog, monkeypatch):
    silent = socket.socket()  # listens (the connection is made) but never answers: each request times out
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1] if server == "never answers" else free_port()  # free: connection refused
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    study = optuna.create_study(study_name=unique("lost"), direction="maximize")
    tracker = tracking.StudyTracker(f"http://127.0.0.1:{port}", study.study_name, contextlib.nullcontext)

    class Outcome:  # what run_objective hands WorkerContext.on_trained (engine.FinetuneOutcome's fields used)
        class config:
            seed = 42

        class train:
            losses, loss_parts = [1.0, 0.5], {"cosent": [1.0, 0.5]}

    def objective(trial, choice):
        tracker.on_trained(trial, [Outcome])
        return 0.5

    tracked = tracker.track(objective)
    start = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING):
            values = [tracked(study.ask(), None) for _ in range(3)]
    finally:
        silent.close()
    assert values == [0.5] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 3, warnings  # one per trial, from any logger (no urllib3 retry lines)
    cause = "timed out" if server == "never answers" else "Connection refused"
    assert all(f"MLflow tracking at http://127.0.0.1:{port} failed" in w and cause in w and "goes on without it" in w
               for w in warnings), warnings
    assert time.monotonic() - start < 3 * 2 + 20  # one request timeout a trial, no minutes of HTTP retries


# ------------------------------------------------------------------ workers as processes

@pytest.mark.slow
def test_grid_study_with_two_workers_has_one_parent_run_and_a_child_per_trial(tmp_path, tiny_data_dir,
                                                                               tiny_model_dir):
    name = unique("mlflow-grid")
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=LOSSES, datasets=("stsb",))
    status = orchestrate.run_study(path, url, workers=2, mlflow=uri, progress=False, log=lambda s: None)
    assert orchestrate.exit_code(status) == 0
    trials = stored_trials(url, name)
    assert len(trials) == len(LOSSES)
    client = MlflowClient(uri)
    parent, children = runs_of(client, name)
    assert parent.info.status == "FINISHED" and parent.data.params["target_trials"] == str(len(LOSSES))
    check_children(client, children, trials, tmp_path)
    values = sorted((m.step, m.value) for m in client.get_metric_history(parent.info.run_id, "value"))
    assert values == pytest.approx(sorted((t.number, t.value) for t in trials))
    assert (tmp_path / "mlartifacts").is_dir()  # beside the store, not in a worker's working folder


@pytest.mark.slow
@pytest.mark.fault
def test_workers_with_a_lost_tracking_server_complete_every_trial(tmp_path, tiny_data_dir, tiny_model_dir, capfd):
    name = unique("mlflow-lost")
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    uri = f"http://127.0.0.1:{free_port()}"
    path = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=LOSSES[:2], datasets=("stsb",))
    lines: list[str] = []
    status = orchestrate.run_study(path, url, workers=2, mlflow=uri, progress=False, log=lines.append)
    assert orchestrate.exit_code(status) == 0
    assert [t.state.name for t in stored_trials(url, name)] == ["COMPLETE"] * 2
    assert sum("no study run yet" in line for line in lines) == 1  # optimize's own attempt
    err = capfd.readouterr().err
    assert err.count(f"MLflow tracking at {uri} failed") == 2, err[-3000:]  # one per trial, from the workers


@pytest.mark.slow
def test_against_mlflow_server_on_localhost(tmp_path, tiny_data_dir, tiny_model_dir):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no 7 job-queue processes
    try:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return server.poll() is not None  # died: stop waiting (asserted below)
        assert poll(up, timeout=180, interval=0.5) and server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        name = unique("mlflow-server")
        url = f"sqlite:///{tmp_path / 'tuner.db'}"
        path = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=LOSSES[1:], datasets=("stsb",))
        status = orchestrate.run_study(path, url, workers=1, mlflow=uri, progress=False, log=lambda s: None)
        assert orchestrate.exit_code(status) == 0
        client = MlflowClient(uri)
        parent, children = runs_of(client, name)
        assert parent.info.status == "FINISHED"
        check_children(client, children, stored_trials(url, name), tmp_path)
        assert list((tmp_path / "server-artifacts").rglob("loss_curve.png"))  # uploaded through the server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the server's own session: uvicorn under it too
            server.wait(timeout=10)
