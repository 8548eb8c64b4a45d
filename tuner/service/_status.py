"""A study's status: trial counts by state, grid coverage, best trial, running trials.

:func:`read_status` is what ``tuner status`` and :func:`tuner.api.status` return; :func:`format_status`
is its text form. No argparse, no torch.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Optional, Union

from tuner.errors import TunerError
from objectives.common import TRAIN_PROGRESS
from tuner.service._confirm_plan import CONFIRM_ATTR, confirm_spec
from tuner.service._progress import summarize, train_progress_of
from tuner.service._progress_view import NO_ETA, describe_steps, format_duration
from tuner.service._study_service import StudyService
from tuner.storage import open_storage
from tuner.study import StudySpec, load_spec


def read_status(study: Union[str, "os.PathLike[str]", Any], storage: Optional[str] = None,
                study_name: Optional[str] = None) -> dict[str, Any]:
    """The status of ``study`` (a name, a path or a StudySpec) in ``storage`` (default
    ``$TUNER_STORAGE``, else ``sqlite:///tuner.db``; it must exist). ``study_name``: the name in
    the storage when it is not the study file's."""

    spec, unknown = study if isinstance(study, StudySpec) else None, None
    if spec is None:
        try:
            spec = load_spec(study)
        except TunerError as exc:  # perhaps a confirm study, which lives in the storage only
            unknown = exc
    try:
        handle = open_storage(storage, heartbeat_interval=None, grace_period=None, must_exist=True)
    except TunerError:
        if unknown is not None:
            raise unknown from None
        raise
    try:
        name = study_name or (spec.name if spec is not None else str(study))
        confirm = _confirm_spec_of(handle, name)
        if confirm is None and spec is None:
            raise unknown
        return collect_status(StudyService(confirm or spec, handle, name))
    finally:
        handle.close()


def _confirm_spec_of(handle: Any, name: str) -> Optional[StudySpec]:
    """A confirm study has no study file: its spec is rebuilt from the plan it recorded (docs/confirm.md)."""
    storage = handle.storage
    try:
        plan = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get(CONFIRM_ATTR)
    except KeyError:
        return None
    return confirm_spec(name, dict(plan)) if isinstance(plan, dict) else None


def collect_status(service: Any) -> dict[str, Any]:
    """The status dict of the study a :class:`tuner.service._study_service.StudyService` serves."""
    import optuna

    storage = service.handle.storage
    try:
        study_id = storage.get_study_id_from_name(service.name)
    except KeyError:
        names = [s.study_name for s in storage.get_all_studies()]
        raise TunerError(f"no study '{service.name}' in {service.handle.masked} (it has: {', '.join(names) or 'none'}); "
                         f"start it with python -m tuner optimize --study {service.spec.name}") from None
    trials = storage.get_all_trials(study_id, deepcopy=False)
    attrs = storage.get_study_user_attrs(study_id)
    spec = service.spec
    counts = {s.name: 0 for s in optuna.trial.TrialState}
    for t in trials:
        counts[t.state.name] += 1
    service.reset_after = int(attrs.get("retries_reset_after", -1))
    progress = service.progress(trials)
    out: dict[str, Any] = {
        "study": service.name, "file": spec.file_label, "storage": service.handle.masked, "task": spec.task,
        "metric": spec.metric, "sampler": spec.sampler, "protocol": spec.protocol, "counts": counts,
        "trials": len(trials),
        "progress": {"target": progress.target, "complete": progress.complete, "pruned": progress.pruned,
                     "running": progress.running, "waiting": progress.waiting, "failed": progress.failed,
                     "duplicates": progress.duplicates, "gave_up": progress.exhausted},
        "best": _best(trials), "running": _running(trials),
        "timing": _timing(trials, progress),
        "zero_shot": {k[len("zero_shot."):]: v for k, v in attrs.items() if k.startswith("zero_shot.")},
    }
    if spec.is_grid:
        states = service.cell_states(trials)
        out["grid"] = {
            "cells": len(states), "complete": progress.complete,
            "coverage": round(progress.complete / max(1, len(states)), 4),
            "duplicates": progress.duplicates,
            "missing": [s.params for s in states.values() if not s.complete],
        }
    return out


def _running(trials: list) -> list[dict[str, Any]]:
    import optuna

    now = dt.datetime.now()
    running = []
    for t in trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            age = (now - t.datetime_start).total_seconds() if t.datetime_start else None
            step = max(t.intermediate_values) if t.intermediate_values else None
            running.append({"number": t.number, "worker": t.user_attrs.get("worker"),
                            "age_s": round(age, 1) if age is not None else None,
                            "step": step, "dev": t.intermediate_values[step] if step is not None else None,
                            **train_progress_of(t.user_attrs.get(TRAIN_PROGRESS)),
                            "params": t.params or t.system_attrs.get("fixed_params", {})})
    return running


def _timing(trials: list, progress: Any) -> dict[str, Any]:
    """done/target, best, elapsed, mean trial seconds and ETA (:func:`tuner.service._progress.summarize`).

    While nothing runs, the study's clock stands at its last finished trial (elapsed = first
    start -> last finish), so a paused study's numbers do not grow."""
    now = None
    if not any(t.state.name == "RUNNING" for t in trials):
        now = max((t.datetime_complete for t in trials if t.datetime_complete is not None), default=None)
    snap = summarize(trials, progress.target, done=progress.complete + progress.pruned, now=now)
    out = snap.to_dict()
    del out["in_flight"], out["running"]
    return out


def _best(trials: list) -> Optional[dict[str, Any]]:
    import optuna

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    b = max(complete, key=lambda t: t.value)
    return {"number": b.number, "value": b.value, "params": b.params,
            "scores": {k: v for k, v in b.user_attrs.items() if k.startswith("scores.")}}


def format_status(st: dict[str, Any]) -> str:
    """The status as the lines ``tuner status`` prints."""
    lines = [f"study {st['study']} ({st['file']}) on {st['storage']}",
             f"task {st['task']}, metric {st['metric']}, sampler {st['sampler']}, protocol {st['protocol']}",
             "trials: " + (", ".join(f"{k} {v}" for k, v in st["counts"].items() if v) or "no trials yet")]
    p = st["progress"]
    if "grid" in st:
        g = st["grid"]
        lines.append(f"grid: {g['complete']}/{g['cells']} cells complete ({100 * g['coverage']:.0f}%), "
                     f"{p['running']} running, {p['waiting']} queued, {len(p['gave_up'])} gave up, "
                     f"duplicates {g['duplicates']}")
    else:
        lines.append(f"progress: {p['complete'] + p['pruned']}/{p['target']} trials finished "
                     f"({p['complete']} complete, {p['pruned']} pruned), {p['running']} running, "
                     f"{p['failed']} failed")
    t = st.get("timing")
    if t:
        per = f", {format_duration(t['mean_trial_s'])} per trial" if t.get("mean_trial_s") is not None else ""
        if t["done"] >= t["target"] and p["running"] == 0:
            left = "done"
        elif t.get("eta_s") is None:
            left = NO_ETA
        else:
            left = f"ETA ~{format_duration(t['eta_s'])} at {t['workers']} worker{'s' if t['workers'] != 1 else ''}"
        lines.append(f"time: {t['done']}/{t['target']} finished, {format_duration(t['elapsed_s'])} elapsed{per}, {left}")
    b = st["best"]
    lines.append(f"best: trial {b['number']} {st['metric']} {b['value']:.4f} params "
                 f"{json.dumps(b['params'], sort_keys=True)}" if b else "best: no complete trial yet")
    if st["running"]:
        lines.append("running:")
        for r in st["running"]:
            age = f"{r['age_s']:.0f}s" if r["age_s"] is not None else "?"
            step = describe_steps(r.get("train_step"), r.get("train_steps"), r.get("run", 1), r.get("runs", 1),
                                  r.get("step"), r.get("dev")).strip()
            lines.append(f"  trial {r['number']:<5} worker {r['worker'] or '?':<24} age {age:<7} "
                         f"{step + ' ' if step else ''}{json.dumps(r['params'], sort_keys=True)}")
    if p["gave_up"]:
        lines.append("gave up (failed max_retries+1 times): "
                     + "; ".join(json.dumps(c, sort_keys=True) for c in p["gave_up"][:5]))
    return "\n".join(lines)
