"""MLflow tracking of a study (``--mlflow URI`` or ``$MLFLOW_TRACKING_URI``): one parent run per
study, one child run per trial.

Why it is shaped this way:

- Workers are separate processes, often on several hosts, so nothing here uses MLflow's fluent API
  (a process-global "active run"): every call names its run through one :class:`mlflow.MlflowClient`.
- The parent run is found or created under a storage-wide lock (``mlflow:<study>``, the kind of
  lock the study's own steps take) and its id is kept in the study's user attr
  ``mlflow_parent_run``, so every worker on every host logs under exactly one parent run; a study
  created anew under an old name gets a new parent run.
- Tracking never fails a trial and never stalls one for long: the first MLflow error of a trial is
  one warning and the rest of that trial's tracking is skipped (the next trial tries again; the
  study's storage, not MLflow, is the record). MLflow's HTTP client would retry 7 times with growing
  back-off and wait 120 s per request, so tuner's processes set :data:`HTTP_LIMITS` unless those
  variables are set: no retry (urllib3 would log each as a warning of its own), 10 s a request,
  and no "View run at" lines on stdout (workers share ``optimize --json``'s stdout).
- A child run opens when its trial starts (RUNNING, so the UI shows running trials) with the
  trial's params. When the trial ends it gets the run config as it ran (``config.*`` params), the
  per-step training losses (``train_loss``; ``train_loss.<loss>`` for a combination, a
  ``.seed<N>`` suffix for repeats), the scores and timings of the trial record (``scores.dev.*``,
  ``scores.test.*``, ``wall_s``, ...), ``config.json`` and ``loss_curve.png`` artifacts, and its
  state: FINISHED (COMPLETE), KILLED (PRUNED or interrupted) or FAILED; the tag ``tuner.state``
  keeps Optuna's name. The parent run gets each complete trial's value (metric ``value``, step =
  trial number) and ends FINISHED when a worker finds the study done.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

from tuner.errors import TunerError
from tuner.service._study_service import worker_label
from tuner.storage import mask_text
from tuner.storage._artifacts import loss_curve_png

_log = logging.getLogger(__name__)
ENV_URI = "MLFLOW_TRACKING_URI"
INSTALL_HINT = "pip install 'tuner[mlflow]'"
#: The study user attr holding the parent run: {"run_id", "experiment_id", "tracking_uri" (masked)}.
PARENT_ATTR = "mlflow_parent_run"
#: MLflow's settings in tuner's processes (unless set): no HTTP retry, 10 s a request, nothing on stdout.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
               "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
#: The cause inside an HTTP error's long message: ``[Errno 111] Connection refused``, ``Read timed out``.
_CAUSE = re.compile(r"\[Errno -?\d+\][^'\")]*|Read timed out|timed out")
#: Trial-record attrs (docs/trial-record.md) logged as metrics besides ``scores.*``.
RECORD_METRICS = ("wall_s", "cpu_s", "peak_mem_mb", "train_pairs_per_s", "trainable_params")
#: ``--mlflow``'s help (optimize, worker).
CLI_HELP = (f"MLflow tracking URI: a parent run per study, a child run per trial (params, per-step losses, dev/test "
            f"scores, artifacts), e.g. sqlite:///mlflow.db or http://HOST:5000; default ${ENV_URI}; 'off' for "
            f"none. Needs {INSTALL_HINT}")
#: A new experiment's tags: the MLflow UI opens it as model training (runs, metrics), not as GenAI (traces).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
#: Optuna state -> MLflow run status.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "INTERRUPTED": "KILLED"}


def resolve_tracking_uri(uri: Optional[str] = None) -> Optional[str]:
    """``--mlflow URI``, else ``$MLFLOW_TRACKING_URI``, else None (no tracking; ``off`` also means none).

    Raises a one-line :class:`TunerError` when tracking is asked for and MLflow is not installed."""
    given = uri is not None and str(uri).strip() != ""
    text = (str(uri) if given else os.environ.get(ENV_URI, "")).strip()
    if not text or text.lower() == "off":
        return None
    if importlib.util.find_spec("mlflow") is None:
        origin = "--mlflow" if given else f"${ENV_URI}"
        raise TunerError(f"{origin} {mask_text(text)}: MLflow is not installed; {INSTALL_HINT} "
                         f"(or leave {origin} out)")
    return text


def check_tracking_uri(uri: Optional[str]) -> Optional[str]:
    """Open MLflow's client for ``uri`` (an SQL store creates its tables now; a server is not called
    yet): a URI MLflow refuses is one line here, before the study is touched."""
    if uri is not None:
        _client(uri)
    return uri


def _client(uri: str) -> Any:
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    try:
        return MlflowClient(uri)
    except Exception as exc:  # noqa: BLE001 - MLflow's own message says what it refused
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TunerError(f"--mlflow {mask_text(uri)}: MLflow cannot use it: {mask_text(first)[:300]}; use e.g. "
                         "sqlite:///mlflow.db or http://HOST:5000") from None


def _param_key(name: str) -> str:
    return re.sub(r"[^\w.\- /:]", "_", str(name))[:250]


def _param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def flat_params(values: dict, prefix: str = "") -> dict[str, str]:
    """``{"weights": {"cosent": 1}}`` -> ``{"weights.cosent": "1"}``: MLflow params are flat strings."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[_param_key(f"{prefix}{key}")] = _param_value(value)
    return out


def local_artifact_root(uri: str) -> Optional[str]:
    """Artifacts of an SQLite store go beside its file (``<db folder>/mlartifacts``), not into each
    worker's working folder (MLflow's default ``./mlruns``); a server decides for itself (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return (Path(path).expanduser().resolve().parent / "mlartifacts").as_uri()


def study_tracker(uri: Optional[str], service: Any, warn: Callable[[str], None] = _log.warning) -> "Optional[StudyTracker]":
    """The :class:`StudyTracker` of a :class:`~tuner.service.StudyService`'s study (None without a URI)."""
    if uri is None:
        return None
    spec = service.spec
    about = {"task": spec.task, "metric": spec.metric_name, "protocol": spec.protocol, "sampler": spec.sampler,
             "study_file": spec.file_label, "target_trials": spec.target_trials, "models": list(spec.models)}
    return StudyTracker(uri, service.name, lambda: service.handle.lock(f"mlflow:{service.name}"), about=about,
                        tags={"tuner.storage": service.handle.masked}, warn=warn)


def open_study_run(tracker: "Optional[StudyTracker]", study: Any) -> None:
    """The study's parent run before the workers start (``optimize``; None: no tracking). A tracking
    server that does not answer is one warning: each trial tries again."""
    if tracker is None:
        return
    try:
        tracker.ensure_parent(study)
    except Exception as exc:  # noqa: BLE001 - tracking never stops a study
        tracker.warn(f"MLflow tracking at {tracker.label}: no study run yet ({_short(exc)}); each trial tries again")


class StudyTracker:
    """One process's MLflow link for one study: the parent run, and :meth:`track` for the trials.

    ``lock()`` is a storage-wide lock (``StorageHandle.lock``); ``about`` are the study's params
    and ``tags`` its tags, logged on the parent run when it is created."""

    def __init__(self, uri: str, study_name: str, lock: Callable[[], ContextManager[Any]], *,
                 about: Optional[dict] = None, tags: Optional[dict] = None,
                 warn: Callable[[str], None] = _log.warning) -> None:
        self.uri, self.study_name, self._lock, self.warn = uri, study_name, lock, warn
        self.about, self.tags = dict(about or {}), dict(tags or {})
        self.label = mask_text(uri)
        self.parent_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.active: Optional[TrialRun] = None
        self._mlflow: Any = None

    @property
    def client(self) -> Any:
        if self._mlflow is None:
            self._mlflow = _client(self.uri)
        return self._mlflow

    def ensure_parent(self, study: Any) -> str:
        """The study's parent run id: the one named in the study's attrs, else a new one (under the lock)."""
        if self.parent_id is not None:
            return self.parent_id
        with self._lock():
            known = study.user_attrs.get(PARENT_ATTR) or {}
            run = self._existing(known.get("run_id"))
            if run is None:
                run = self._create_parent()
                study.set_user_attr(PARENT_ATTR, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                                                  "tracking_uri": self.label})
            elif run.info.status != "RUNNING":  # a finished study resumed (--retry-failed, a new worker)
                self.client.update_run(run.info.run_id, status="RUNNING")
        self.parent_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        return self.parent_id

    def _existing(self, run_id: Optional[str]) -> Any:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:  # another tracking store than the one the attr was written for
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return None if run.info.lifecycle_stage == "deleted" else run

    def _create_parent(self) -> Any:
        from mlflow.entities import Param

        client = self.client
        experiment = client.get_experiment_by_name(self.study_name)
        if experiment is None:
            experiment_id = client.create_experiment(self.study_name, artifact_location=local_artifact_root(self.uri),
                                                     tags=EXPERIMENT_TAGS)
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
        tags = {"tuner.study": self.study_name, "tuner.role": "study", **self.tags}
        run = client.create_run(experiment_id, run_name=self.study_name, tags=tags)
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in flat_params(self.about).items()])
        return run

    def finish_study(self, status: str) -> None:
        """End the parent run (``FINISHED``, ``FAILED``, ``KILLED``); a failure is one warning."""
        if self.parent_id is None:
            return
        try:
            self.client.set_terminated(self.parent_id, status=status)
        except Exception as exc:  # noqa: BLE001 - tracking never fails the study
            self.warn(f"MLflow tracking at {self.label}: could not end the study's run: {_short(exc)}")

    def track(self, objective: Callable[[Any, Any], float]) -> Callable[[Any, Any], float]:
        """``objective`` with a child run around each trial (see the module docstring)."""

        def tracked(trial: Any, choice: Any) -> float:
            run = self.active = TrialRun(self, trial, choice)
            try:
                value = objective(trial, choice)
            except BaseException as exc:
                run.close(_state_of(exc), None, trial.user_attrs.get("failure") or f"{type(exc).__name__}: {exc}")
                raise
            finally:
                self.active = None
            finite = value is not None and math.isfinite(float(value))
            run.close("COMPLETE" if finite else "PRUNED", float(value) if finite else None,
                      None if finite else f"objective value is {value}")
            return value

        return tracked

    def on_trained(self, trial: Any, outcomes: list) -> None:
        """``WorkerContext.on_trained``: the running trial's per-step losses go to its child run."""
        if self.active is not None and self.active.trial is trial:
            self.active.log_losses(outcomes)


def _state_of(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "INTERRUPTED"
    import optuna

    return "PRUNED" if isinstance(exc, optuna.TrialPruned) else "FAIL"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    cause = _CAUSE.search(text)
    return mask_text(f"{type(exc).__name__}: {cause.group(0).strip() if cause else text}")[:300]


class TrialRun:
    """One trial's child run. Every MLflow call goes through :meth:`_call`: the first error is one
    warning and turns the rest of this trial's tracking off."""

    def __init__(self, tracker: StudyTracker, trial: Any, choice: Any) -> None:
        self.tracker, self.trial, self.choice = tracker, trial, choice
        self.run_id: Optional[str] = None
        self.broken = False
        self.curve: Optional[tuple[list, dict]] = None
        self._call("open the trial's run", self._open)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a lost tracking server is a warning, never a failed trial
            self.broken = True
            self.tracker.warn(f"trial {self.trial.number}: MLflow tracking at {self.tracker.label} failed "
                              f"({what}: {_short(exc)}); the trial goes on without it")
            return None

    def _open(self) -> None:
        from mlflow.entities import Param

        tracker, trial = self.tracker, self.trial
        parent = tracker.ensure_parent(trial.study)
        tags = {"mlflow.parentRunId": parent, "tuner.study": tracker.study_name, "tuner.trial": str(trial.number),
                "tuner.state": "RUNNING", "tuner.worker": worker_label()}
        run = tracker.client.create_run(tracker.experiment_id, run_name=f"trial {trial.number}", tags=tags)
        self.run_id = run.info.run_id
        tracker.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat_params(trial.params).items()])

    def log_losses(self, outcomes: list) -> None:
        """``train_loss`` per step of each seed's run (and of each loss of a combination)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for outcome in outcomes:
            suffix = f".seed{outcome.config.seed}" if len(outcomes) > 1 else ""
            curves = {"train_loss": outcome.train.losses}
            if len(outcome.train.loss_parts) > 1:
                curves.update({f"train_loss.{name}": values for name, values in outcome.train.loss_parts.items()})
            for name, values in curves.items():
                metrics += [Metric(name + suffix, float(v), now, step) for step, v in enumerate(values, 1)]
        if outcomes:
            self.curve = (list(outcomes[0].train.losses), dict(outcomes[0].train.loss_parts))
        if self.run_id is not None:
            self._call("log the training losses", self.tracker.client.log_batch, self.run_id, metrics=metrics)

    def close(self, state: str, value: Optional[float], failure: Optional[str]) -> None:
        """Log the run config as it ran, the trial record's metrics, the artifacts; end the run."""
        if self.run_id is None:
            return
        self._call("record the trial's end", self._close, state, value, failure)

    def _close(self, state: str, value: Optional[float], failure: Optional[str]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client, trial, now = self.tracker.client, self.trial, int(time.time() * 1000)
        attrs = trial.user_attrs
        config = attrs.get("config") or (self.choice.to_dict() if hasattr(self.choice, "to_dict") else {})
        numbers = {k: v for k, v in attrs.items() if k.startswith("scores.") or k in RECORD_METRICS}
        if value is not None:
            numbers["value"] = value
        metrics = [Metric(_param_key(k), float(v), now, 0) for k, v in numbers.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        params = [Param(k, v) for k, v in flat_params(config, "config.").items()]
        tags = [RunTag("tuner.state", "FAIL" if state == "INTERRUPTED" else state)]
        if failure:
            tags.append(RunTag("tuner.failure", str(failure)[:5000]))
        client.log_batch(self.run_id, metrics=metrics, params=params, tags=tags)
        record = {"study": self.tracker.study_name, "trial": trial.number, "state": state, "value": value,
                  "failure": failure, "params": trial.params, "config": config,
                  "scores": {k: v for k, v in numbers.items() if k.startswith("scores.")}}
        client.log_dict(self.run_id, json.loads(json.dumps(record, default=str)), "config.json")
        if self.curve is not None and self.curve[0]:
            with tempfile.TemporaryDirectory(prefix="tuner-mlflow-") as tmp:
                title = f"trial {trial.number}: {attrs.get('loss', '')} on {'+'.join(config.get('train', []))}"
                client.log_artifact(self.run_id, str(loss_curve_png(Path(tmp) / "loss_curve.png", *self.curve, title)))
        client.set_terminated(self.run_id, status=RUN_STATUS[state])
        if value is not None and self.tracker.parent_id is not None:
            client.log_metric(self.tracker.parent_id, "value", value, now, trial.number)

