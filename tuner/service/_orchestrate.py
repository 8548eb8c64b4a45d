"""Run a study with N worker processes: what ``tuner optimize`` and :func:`tuner.api.optimize` do.

``check everything the user gave -> create or load the study and queue its grid cells -> start one
``python -m tuner worker`` process per GPU / CPU share -> wait -> the study's status``. Workers are
separate processes (a process boundary, not an import); they read the study from its file, so a
study given as a :class:`~tuner.study.StudySpec` without a file is written to one first
(:func:`study_file`). Re-running the same study resumes it: finished trials and complete grid
cells are kept.

This module imports neither argparse nor the CLI; it imports no torch.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Union

from objectives import get_objective
from objectives.common import WorkerContext
from tuner.errors import TunerError
from tuner.service import _warm_start as ws
from tuner.storage._artifacts import open_store, resolve_artifacts_dir
from tuner.service._progress import summarize
from tuner.service._progress_view import TTY_ENV, LiveProgress
from tuner.service._status import collect_status
from tuner.service._study_service import StudyService, worker_label
from tuner.service._tracking import ENV_URI, check_tracking_uri, open_study_run, resolve_tracking_uri, study_tracker
from tuner.service._workers import aggregate, plan_workers, run_workers
from tuner.storage import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    ENV_STORAGE,
    open_storage,
    require_shared,
    resolve_url,
)
from tuner.study import StudySpec, load_spec, parse_spec

Log = Callable[[str], None]
StudyRef = Union[str, "os.PathLike[str]", Any]  # a study name, a path or a StudySpec


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet_log(message: str) -> None:
    """A :data:`Log` that drops every message."""


def env_seconds(name: str, default: int) -> int:
    """A positive integer from the environment (``$TUNER_HEARTBEAT_INTERVAL``), else ``default``."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


def default_heartbeat_interval() -> int:
    return env_seconds("TUNER_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL)


def default_grace_period() -> int:
    return env_seconds("TUNER_GRACE_PERIOD", DEFAULT_GRACE_PERIOD)


def as_spec(study: StudyRef) -> Any:
    """A :class:`~tuner.study.StudySpec` for a study name, a path or a spec."""
    return study if isinstance(study, StudySpec) else load_spec(study)


def study_file(spec: Any, n_trials: Optional[int] = None, folder: "str | os.PathLike | None" = None) -> Path:
    """The file the workers read for ``spec``: its own file, or (for a spec built in Python, or
    with ``n_trials`` changed) a copy written to ``folder`` (default: a new temporary folder).

    Study files are parsed, never executed; a relative ``data_dir`` is made absolute so the copy
    reads the same data."""
    from tuner.exporter.toml import toml_dumps

    if n_trials is None and spec.path is not None:
        return Path(spec.path)
    raw = dict(spec.raw)
    raw.setdefault("name", spec.name)
    if n_trials is not None:
        raw["n_trials"] = int(n_trials)
    if spec.path is not None and "data_dir" in raw and not Path(str(raw["data_dir"])).is_absolute():
        raw["data_dir"] = str((Path(spec.path).parent / str(raw["data_dir"])).resolve())
    where = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="tuner-study-"))
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{spec.name}.toml"
    path.write_text(toml_dumps(raw))
    parse_spec(raw, path)  # validate what the workers will read
    return path


def check_inputs(spec: Any) -> None:
    """Fail early (before anything is written) on datasets or models that cannot be found."""
    from tuner.data import load_dataset
    from tuner.data.beir import is_beir_folder
    from tuner.models._encoder import resolve_model

    label = spec.file_label
    for model in spec.models:
        try:
            resolve_model(spec.model_source(model))
        except TunerError as exc:
            raise TunerError(f"{label}: key 'models': {exc}") from None
    # an NLI study trains on NLI data and is scored on STS sets (transfer_eval): each is checked as its own task
    tasks = {name: spec.task for name in spec.grid_datasets + spec.train_datasets + spec.eval_datasets}
    tasks.update({name: "sts" for name in spec.transfer_eval})
    tasks.update({name: "retrieval" for name in spec.eval_datasets + spec.transfer_eval  # eval sets may be these too
                  if is_beir_folder(spec.dataset_source(name))})
    for name, task in tasks.items():
        try:
            ds = load_dataset(spec.dataset_source(name), task=task, data_dir=spec.data_dir)
        except TunerError as exc:
            raise TunerError(f"{label}: dataset '{name}': {exc}") from None
        if ds.task != task:
            raise TunerError(f"{label}: dataset '{name}' is {ds.task} data but the study needs {task} data there")


def check_heartbeat(heartbeat_interval: int, grace_period: int) -> None:
    if heartbeat_interval < 1 or grace_period < 1:
        raise TunerError(f"heartbeat interval {heartbeat_interval}s and grace period {grace_period}s: "
                         "use 1 second or more")
    if grace_period <= heartbeat_interval:
        raise TunerError(f"--grace-period {grace_period} must be longer than --heartbeat-interval "
                         f"{heartbeat_interval}")


def run_study(study: StudyRef, storage: Optional[str] = None, *, workers: Optional[int] = None,
              gpus: Optional[str] = None, study_name: Optional[str] = None, n_trials: Optional[int] = None,
              artifacts: "str | os.PathLike | bool | None" = None, retry_failed: bool = False,
              heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
              log: Log = stderr_log, progress: bool = True, progress_interval: Optional[float] = None,
              warm_start: Optional[str] = None, warm_start_k: Optional[int] = None,
              mlflow: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) ``study`` with worker processes and return its status (:mod:`tuner.service._status`)
    plus ``wall_s`` and ``worker_exit_codes``; :func:`exit_code` turns that into an exit status.

    ``study``: a name from the studies folder, a path, or a StudySpec. ``storage``: a URL (default
    ``$TUNER_STORAGE``, else ``sqlite:///tuner.db``). ``workers``: processes (default one per
    visible GPU, else 1); ``gpus``: ``"0,1"`` or ``"none"``. ``artifacts``: a folder, None for the
    default one, False for none. ``retry_failed``: give cells that gave up a new round of retries.
    ``heartbeat_interval``/``grace_period``: seconds (default ``$TUNER_HEARTBEAT_INTERVAL`` / 10 and
    ``$TUNER_GRACE_PERIOD`` / 30). ``log`` receives the progress lines (default: stderr).
    ``progress``: while workers run, a live line (done/total, best, elapsed, ETA; redrawn in place
    when ``log`` is stderr and stderr is a terminal, else a plain line through ``log`` per finished
    trial and at most every ``progress_interval`` seconds, default ``$TUNER_PROGRESS_INTERVAL`` or 60).
    ``warm_start``/``warm_start_k``: enqueue the best k complete trials of that study of the same
    storage first (default: the study file's ``warm_start``; :mod:`tuner.service._warm_start`). ``mlflow``: an
    MLflow tracking URI (default ``$MLFLOW_TRACKING_URI``; ``"off"``: none; :mod:`tuner.service._tracking`).
    """

    # 1. everything the user gave is checked before the storage is touched
    spec = as_spec(study)
    path = study_file(spec, n_trials)
    if path != spec.path:
        spec = as_spec(path)
    url = resolve_url(storage)
    require_shared(url)  # sqlite:///:memory: is one per process
    plans = plan_workers(workers, gpus)
    interval = default_heartbeat_interval() if heartbeat_interval is None else int(heartbeat_interval)
    grace = default_grace_period() if grace_period is None else int(grace_period)
    check_heartbeat(interval, grace)
    check_inputs(spec)
    tracking = check_tracking_uri(resolve_tracking_uri(mlflow))
    warm = ws.resolve(spec, warm_start, warm_start_k)
    folder = None if artifacts is False else resolve_artifacts_dir(url, None if artifacts is True else artifacts)

    # 2. study + queue
    handle = open_storage(url, heartbeat_interval=interval, grace_period=grace)
    try:
        service = StudyService(spec, handle, study_name)
        start = time.perf_counter()
        started = dt.datetime.now()
        if warm is not None:
            ws.check_source(handle.storage, warm[0], service.name, handle.masked)  # before the study is created
        if retry_failed:
            service.reset_retries(service.create_or_load())
        study, state = service.prepare()
        name_metric(study, spec, log)
        open_study_run(study_tracker(tracking, service, warn=log), study)
        if warm is not None and ws.warm_start(service, study, warm[0], warm[1], log=log):
            state = service.progress(study.get_trials(deepcopy=False))
        what = f"{spec.n_cells} cells" if spec.is_grid else f"{spec.n_trials} trials"
        log(f"study '{service.name}' ({spec.file_label}) on {handle.masked}: {what}, "
            f"{state.complete} complete, {len(plans)} worker(s)")
        for note in spec.notes:
            log(f"note: {note}")
        codes: list[int] = []
        if state.finished and state.complete + state.pruned >= state.target:
            log("nothing to do: the study is complete")
        else:
            handle.close()  # the parent holds no connection while workers run (the progress line reads its own)
            args = ["--study", str(path), "--study-name", service.name,
                    "--heartbeat-interval", str(interval), "--grace-period", str(grace)]
            args += ["--no-artifacts"] if folder is None else ["--artifacts", str(folder)]
            live = start_progress(url, service, len(plans), started, log, progress_interval) if progress else None
            codes = _run_workers(plans, args, url, live, log, tracking)
            # the status reads through a handle opened now: the closed one is closed for good (a grpc://
            # channel cannot be reused) and a database may have restarted while the workers ran
            handle = service.handle = open_storage(url, heartbeat_interval=interval, grace_period=grace)

        status = collect_status(service)
    finally:
        handle.close()
    status["wall_s"] = round(time.perf_counter() - start, 2)
    status["worker_exit_codes"] = codes
    return status


def _run_workers(plans: list, args: list[str], url: str, live: Any, log: Log, tracking: Optional[str] = None) -> list[int]:
    """The worker processes, with the live progress line ``live`` (or None) shown while they run. The
    MLflow URI travels in the environment too (it may hold a password); none there means no tracking."""

    env = {**os.environ, ENV_STORAGE: url}
    env.pop(ENV_URI, None)
    if tracking is not None:
        env[ENV_URI] = tracking
    if live is not None and live.tty:
        env[TTY_ENV] = "1"  # the workers erase the live line before each of their lines
    try:
        return run_workers(plans, args, env, log=live.log if live is not None else log)
    finally:
        if live is not None:
            live.stop()


def name_metric(study: Any, spec: Any, log: Log) -> None:
    """Name the objective on the dashboard ("dev spearman (mean over stsb)", not "Objective 0")."""
    names = [spec.metric_name]
    try:
        if list(getattr(study, "metric_names", None) or []) != names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # set_metric_names is experimental in Optuna 3.x
                study.set_metric_names(names)
    except Exception as exc:  # noqa: BLE001 - a dashboard label never stops a study
        log(f"could not name the objective for the dashboard ({type(exc).__name__}: {exc})")


def start_progress(url: str, service: Any, workers: int, started: "dt.datetime", log: Log,
                   every_s: Optional[float] = None) -> Any:
    """The live progress line (:class:`tuner.service._progress_view.LiveProgress`) of a running study; it
    reads the storage through a connection of its own."""

    handles: list[Any] = []

    def fetch() -> Any:
        if not handles:
            handles.append(open_storage(url, heartbeat_interval=None, grace_period=None))
        storage = handles[0].storage
        trials = storage.get_all_trials(storage.get_study_id_from_name(service.name), deepcopy=False)
        p = service.progress(trials)
        return summarize(trials, p.target, done=p.complete + p.pruned, workers=workers, started=started)

    live = LiveProgress(fetch, log=log, metric=service.spec.metric, unit="cells" if service.spec.is_grid else "trials",
                        tty=None if log is stderr_log else False, every_s=every_s,
                        on_stop=lambda: [h.close() for h in handles])
    return live.start()


def is_done(status: dict[str, Any]) -> bool:
    """Every trial or cell finished (complete or pruned) and none running or queued."""
    p = status["progress"]
    return p["complete"] + p["pruned"] >= p["target"] and p["running"] == 0 and p["waiting"] == 0


def exit_code(status: dict[str, Any]) -> int:
    """0 when the study is done and no worker was interrupted; 130 when one was; else non-zero."""
    codes = status.get("worker_exit_codes", [])
    if is_done(status) and not any(c == 130 for c in codes):
        return 0
    return aggregate(codes) or 1


def run_worker(study: StudyRef, storage: Optional[str] = None, *, study_name: Optional[str] = None,
               worker_index: int = 0, max_trials: Optional[int] = None, device: Optional[str] = None,
               artifacts: "str | os.PathLike | bool | None" = None, progress: bool = False,
               heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
               mlflow: Optional[str] = None) -> int:
    """One worker: run trials of ``study`` until it is finished (what ``python -m tuner worker``
    runs in each process :func:`run_study` starts). Returns 0 finished, 1 cells/trials gave up
    after their retries, 130 stopped by a signal. ``$TUNER_WORKER_THREADS`` sets torch's threads.
    ``mlflow``: a tracking URI (default ``$MLFLOW_TRACKING_URI``): a child run per trial."""
    import torch


    from tuner.models._encoder import resolve_device

    threads = os.environ.get("TUNER_WORKER_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    spec = as_spec(study)
    url = resolve_url(storage)
    interval = default_heartbeat_interval() if heartbeat_interval is None else int(heartbeat_interval)
    grace = default_grace_period() if grace_period is None else int(grace_period)
    check_heartbeat(interval, grace)
    where = resolve_device(device)
    tracking = check_tracking_uri(resolve_tracking_uri(mlflow))
    handle = open_storage(url, heartbeat_interval=interval, grace_period=grace)
    try:
        service = StudyService(spec, handle, study_name)
        folder = None if artifacts is False else resolve_artifacts_dir(url, None if artifacts is True else artifacts)
        store = None if folder is None else open_store(folder)
        tracker = study_tracker(tracking, service)
        ctx = WorkerContext(spec=spec, handle=handle, study_name=service.name, device=where, worker=worker_label(),
                            artifact_store=store, progress=progress)
        if tracker is not None:
            ctx.on_trained = tracker.on_trained
        objective = get_objective(spec.task)
        service.create_or_load()  # a hand-started worker may be the first one
        erase = "\r\x1b[K" if os.environ.get("TUNER_PROGRESS_TTY") == "1" else ""  # optimize's live line

        def log(message: str) -> None:
            print(erase + message, file=sys.stderr, flush=True)

        def run_trial(trial: Any, choice: Any) -> float:
            return objective(trial, choice, ctx)

        code = service.run_worker(run_trial if tracker is None else tracker.track(run_trial),
                                  worker_index=worker_index, max_trials=max_trials, log=log)
        if tracker is not None and max_trials is None and code in (0, 1):  # the study ended (done / gave up)
            tracker.finish_study("FINISHED" if code == 0 else "FAILED")
        return code
    finally:
        handle.close()
        sys.stderr.flush()
