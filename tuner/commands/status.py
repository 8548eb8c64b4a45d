"""``tuner status``: trial counts by state, grid coverage, best value and params, running trials."""
from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from tuner.commands.common import print_json
from tuner.commands.optimize import add_storage_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a study's progress, best trial and running trials",
                       description="Counts of trials by state, grid coverage (cells complete / total, duplicates), "
                                   "the best value and its params, and the running trials with their worker "
                                   "(host:pid) and age.")
    p.add_argument("--study", required=True, help="study name from studies/ or a .toml path")
    add_storage_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def collect_status(service: Any) -> dict[str, Any]:
    import optuna

    storage = service.handle.storage
    try:
        study_id = storage.get_study_id_from_name(service.name)
    except KeyError:
        from tuner.errors import TunerError

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
    now = dt.datetime.now()
    running = []
    for t in trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            age = (now - t.datetime_start).total_seconds() if t.datetime_start else None
            running.append({"number": t.number, "worker": t.user_attrs.get("worker"),
                            "age_s": round(age, 1) if age is not None else None,
                            "params": t.params or t.system_attrs.get("fixed_params", {})})
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = None
    if complete:
        b = max(complete, key=lambda t: t.value)
        best = {"number": b.number, "value": b.value, "params": b.params,
                "scores": {k: v for k, v in b.user_attrs.items() if k.startswith("scores.")}}
    out: dict[str, Any] = {
        "study": service.name, "file": spec.file_label, "storage": service.handle.masked, "task": spec.task,
        "metric": spec.metric, "sampler": spec.sampler, "protocol": spec.protocol, "counts": counts,
        "trials": len(trials),
        "progress": {"target": progress.target, "complete": progress.complete, "pruned": progress.pruned,
                     "running": progress.running, "waiting": progress.waiting, "failed": progress.failed,
                     "duplicates": progress.duplicates, "gave_up": progress.exhausted},
        "best": best, "running": running,
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


def print_status(st: dict[str, Any]) -> None:
    print(f"study {st['study']} ({st['file']}) on {st['storage']}")
    print(f"task {st['task']}, metric {st['metric']}, sampler {st['sampler']}, protocol {st['protocol']}")
    shown = ", ".join(f"{k} {v}" for k, v in st["counts"].items() if v) or "no trials yet"
    print(f"trials: {shown}")
    p = st["progress"]
    if "grid" in st:
        g = st["grid"]
        print(f"grid: {g['complete']}/{g['cells']} cells complete ({100 * g['coverage']:.0f}%), "
              f"{p['running']} running, {p['waiting']} queued, {len(p['gave_up'])} gave up, "
              f"duplicates {g['duplicates']}")
    else:
        print(f"progress: {p['complete'] + p['pruned']}/{p['target']} trials finished "
              f"({p['complete']} complete, {p['pruned']} pruned), {p['running']} running, {p['failed']} failed")
    if st["best"]:
        b = st["best"]
        print(f"best: trial {b['number']} {st['metric']} {b['value']:.4f} params {json.dumps(b['params'], sort_keys=True)}")
    else:
        print("best: no complete trial yet")
    if st["running"]:
        print("running:")
        for r in st["running"]:
            age = f"{r['age_s']:.0f}s" if r["age_s"] is not None else "?"
            print(f"  trial {r['number']:<5} worker {r['worker'] or '?':<24} age {age:<7} "
                  f"{json.dumps(r['params'], sort_keys=True)}")
    if p["gave_up"]:
        print("gave up (failed max_retries+1 times): " + "; ".join(json.dumps(c, sort_keys=True) for c in p["gave_up"][:5]))


def run(args: argparse.Namespace) -> int:
    from tuner.service import StudyService
    from tuner.storage import open_storage
    from tuner.study import load_spec

    spec = load_spec(args.study)
    handle = open_storage(args.storage, heartbeat_interval=None, grace_period=None, must_exist=True)
    try:
        st = collect_status(StudyService(spec, handle, args.study_name))
    finally:
        handle.close()
    if args.json:
        print_json(st)
    else:
        print_status(st)
    return 0
