"""``tuner confirm``: re-run the top K configurations of a study with N seeds, with baselines, and report.

``check the request -> open the storage -> the confirm study's plan (read back, or chosen now from
the parent's trials: tuner.service._confirm_plan) -> queue its cells and run them in this process
-> the report (tuner.exporter.confirm) -> optionally the files and the winner's saved model``.

The confirm study (default name ``<study>-confirm``) lives in the parent's storage, so several
machines run the same command against one URL and share its cells exactly once (the grid
machinery of :class:`~tuner.service.StudyService`); each command is one worker (run one per GPU
or machine). Re-running it resumes; when every cell is done it only reports.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from objectives import get_objective
from objectives.common import WorkerContext
from tuner.errors import TunerError
from tuner.exporter.confirm import confirm_report, moved_to
from tuner.service._confirm_plan import (
    BASELINES,
    CONFIRM_ATTR,
    PARENT_ATTR,
    check_request,
    check_same_request,
    confirm_spec,
    make_plan,
)
from tuner.service._orchestrate import (
    check_heartbeat,
    default_grace_period,
    default_heartbeat_interval,
    stderr_log,
)
from tuner.service._study_service import StudyService, worker_label
from tuner.storage import open_storage, resolve_url
from tuner.storage._artifacts import open_store

Log = Callable[[str], None]


def run_confirm(study: str, storage: Optional[str] = None, *, top: int, seeds: Sequence[int],
                budget: Optional[Mapping[str, Any]] = None, baselines: Sequence[str] = BASELINES,
                study_name: Optional[str] = None, dataset: Optional[str] = None, on: Optional[str] = None,
                model: Optional[str] = None, device: Optional[str] = None, out: "str | os.PathLike | None" = None,
                save_model: bool = False, artifacts: "str | os.PathLike | None" = None, heartbeat_interval: Optional[int] = None,
                grace_period: Optional[int] = None, run: bool = True, log: Log = stderr_log) -> dict[str, Any]:
    """Run (or resume) the confirmation of ``study`` and return its report (docs/confirm.md).

    ``top``: K configurations by the parent's dev value; ``seeds``: the training seeds each runs
    with; ``budget``: ``epochs``/``max_steps``/``max_train_examples``/``max_eval_examples`` (unset:
    full files, each configuration's own epochs); ``baselines``: ``zero-shot``, ``st-example``
    (sentence-transformers' STS-B example as a tuner run) or none. ``dataset``: only the parent's
    configurations scored on this dataset (a grid over several). ``on``: train and score every
    system on this dataset instead of the searched one (does the answer transfer?); the study is
    then ``<study>-confirm-on-<on>``. ``model``: train every system from this model instead
    (``<study>-confirm-with-<model>``: does the answer hold for a bigger model?). ``run=False``
    reports without running a cell. ``out``: write the files of :mod:`tuner.exporter.confirm_files` there;
    ``save_model``: also train the winner once more (its first seed) and save it to ``out/model``
    in the sentence-transformers format. The report has ``complete`` and ``worker_exit_code``."""
    request = check_request(top, seeds, budget, baselines)
    if save_model and out is None:
        raise TunerError("--save-model writes into the --out folder; give --out DIR")
    interval = default_heartbeat_interval() if heartbeat_interval is None else int(heartbeat_interval)
    grace = default_grace_period() if grace_period is None else int(grace_period)
    check_heartbeat(interval, grace)
    name = study_name or default_name(study, on, model)
    if name == study:
        raise TunerError(f"--study-name {name} is the study being confirmed; choose another name")
    handle = open_storage(resolve_url(storage), heartbeat_interval=interval, grace_period=grace)
    try:
        plan = _plan(handle, study, name, request, dataset, on, model)
        spec = confirm_spec(name, plan)
        service = StudyService(spec, handle, name)
        confirm, state = service.prepare()
        for key, value in ((CONFIRM_ATTR, plan), (PARENT_ATTR, study)):
            if key not in confirm.user_attrs:
                confirm.set_user_attr(key, value)
        log(f"confirm study '{name}' on {handle.masked}: the top {top} of '{study}'{moved_to(on, model)} and "
            f"{len(plan['trained_baselines'])} trained baseline(s) x {len(plan['seeds'])} seed(s) = {spec.n_cells} cells, "
            f"{state.complete} complete")
        code = 0
        if run and state.complete + state.pruned < state.target:
            code = _work(service, spec, handle, name, device, artifacts, log)
        confirm = service.load()
        trials = confirm.get_trials(deepcopy=False)
        report = confirm_report(plan, trials, dict(confirm.user_attrs))
        report["study"] = name
        progress = service.progress(trials)
        report["complete"] = progress.complete >= progress.target
        report["cells"] = {"complete": progress.complete, "total": progress.target}
        report["worker_exit_code"] = code
        if out is not None:
            report["files"] = {k: str(v) for k, v in _export(report, trials, out, save_model, device, log).items()}
        return report
    finally:
        handle.close()


def default_name(study: str, on: Optional[str] = None, model: Optional[str] = None) -> str:
    """``<study>-confirm``, ``-on-<dataset>`` and ``-with-<model>`` appended when they are set."""
    name = f"{study}-confirm"
    if on is not None:
        name += f"-on-{Path(on).stem}"
    if model is not None:
        name += f"-with-{Path(model).name}"
    return name


def _plan(handle: Any, parent: str, name: str, request: dict[str, Any], dataset: Optional[str],
          on: Optional[str], model: Optional[str]) -> dict[str, Any]:
    """The confirm study's recorded plan (checked against ``request``), else a new one from the parent."""
    storage = handle.storage
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        attrs = None
    if attrs is not None:
        stored = attrs.get(CONFIRM_ATTR)
        if not isinstance(stored, Mapping):
            raise TunerError(f"study '{name}' in {handle.masked} is not a confirm study; pass --study-name NEW_NAME")
        check_same_request(name, stored, request, parent, dataset, on, model)
        return dict(stored)
    try:
        parent_id = storage.get_study_id_from_name(parent)
    except KeyError:
        raise TunerError(f"no study '{parent}' in {handle.masked}; name a study that has run there "
                         f"(python -m tuner status --study NAME)") from None
    import optuna

    trials = storage.get_all_trials(parent_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return make_plan(request, parent, storage.get_study_user_attrs(parent_id), trials, dataset, on, model)


def _work(service: StudyService, spec: Any, handle: Any, name: str, device: Optional[str],
          artifacts: "str | os.PathLike | None", log: Log) -> int:
    """Run the confirm study's cells in this process until none is left (one worker)."""
    from tuner.models._encoder import resolve_device

    ctx = WorkerContext(spec=spec, handle=handle, study_name=name, device=resolve_device(device),
                        worker=worker_label(), artifact_store=None if artifacts is None else open_store(Path(artifacts)))
    objective = get_objective(spec.task)
    return service.run_worker(lambda trial, choice: objective(trial, choice, ctx), log=log)


def _export(report: dict[str, Any], trials: Sequence[Any], out: "str | os.PathLike", save_model: bool,
            device: Optional[str], log: Log) -> dict[str, Path]:
    """The files (and with ``save_model`` the winner's model) of ``confirm --out``."""
    from tuner.exporter.confirm_files import write_confirm

    winner = report["winner"]
    runs = sorted((t for t in trials if winner is not None and t.params.get("config") == winner
                   and t.state.name == "COMPLETE"), key=lambda t: t.params["seed"])
    files = write_confirm(report, out, runs[0] if runs else None)
    if save_model:
        if not runs:
            log("no model saved: there is no winner (a tie); the report names the tied configurations")
        else:
            from tuner.engine._run import run_finetune
            from tuner.exporter.best import recorded_config
            from tuner.models._encoder import resolve_device

            config = recorded_config(runs[0])
            log(f"training the winner {winner} once more (seed {config.seed}) to save it")
            outcome = run_finetune(config, device=resolve_device(device), output=Path(out) / "model", progress=False)
            files["model"] = Path(outcome.output)
    return files
