"""``tuner optimize``: run a study (``studies/NAME.toml`` or a path) with N worker processes.

Re-running the same command resumes the study: finished trials and complete grid cells are kept.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from tuner.commands.common import positive_int, print_json
from tuner.errors import TunerError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


def add_storage_args(p: argparse.ArgumentParser, heartbeat: bool = False) -> None:
    p.add_argument("--storage", default=None,
                   help="storage URL: sqlite:///tuner.db (default), postgresql://user:pass@host/db, "
                        "mysql://user:pass@host/db (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--study-name", default=None,
                   help="name of the study in the storage (default: the study file's name)")
    if heartbeat:
        p.add_argument("--heartbeat-interval", type=positive_int,
                       default=_env_int("TUNER_HEARTBEAT_INTERVAL", 10),
                       help="seconds between a running trial's heartbeats (default 10; $TUNER_HEARTBEAT_INTERVAL)")
        p.add_argument("--grace-period", type=positive_int, default=_env_int("TUNER_GRACE_PERIOD", 30),
                       help="seconds without heartbeat after which a trial's worker counts as dead and its trial "
                            "is failed and re-run (default 30; $TUNER_GRACE_PERIOD)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="run a study with one or more worker processes",
                       description="Run the study described by a study file with N worker processes sharing one "
                                   "storage. Grid studies run every cell exactly once to COMPLETE (failed cells and "
                                   "cells of dead workers are re-run, up to max_retries); TPE studies run n_trials. "
                                   "Run the same command again to resume, or on several machines with one "
                                   "PostgreSQL/MySQL URL for one distributed study. Ctrl-C stops cleanly.")
    p.add_argument("--study", required=True, help="study name from studies/ (python -m tuner studies) or a .toml path")
    add_storage_args(p, heartbeat=True)
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes (default: one per visible GPU, else 1)")
    p.add_argument("--gpus", default=None,
                   help="comma-separated GPU indexes to use, one worker each (e.g. 0,1,2,3); 'none' for CPU only")
    p.add_argument("--artifacts", default=None,
                   help="folder for trial artifacts (loss curve, config); default <db folder>/artifacts for "
                        "SQLite, ./artifacts otherwise; $TUNER_ARTIFACTS")
    p.add_argument("--no-artifacts", action="store_true", help="do not write trial artifacts")
    p.add_argument("--retry-failed", action="store_true",
                   help="give cells that failed max_retries+1 times (or TPE studies that gave up) a new round "
                        "of retries, e.g. after fixing the cause")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.set_defaults(func=run)


def check_inputs(spec: Any) -> None:
    """Fail early (before anything is written) on datasets or models that cannot be found."""
    from tuner.data import load_dataset
    from tuner.models import resolve_model

    label = spec.file_label
    for model in spec.models:
        try:
            resolve_model(spec.model_source(model))
        except TunerError as exc:
            raise TunerError(f"{label}: key 'models': {exc}") from None
    names = dict.fromkeys(spec.grid_datasets + spec.train_datasets + spec.eval_datasets)
    for name in names:
        try:
            ds = load_dataset(spec.dataset_source(name), task=spec.task, data_dir=spec.data_dir)
        except TunerError as exc:
            raise TunerError(f"{label}: dataset '{name}': {exc}") from None
        if ds.task != spec.task:
            raise TunerError(f"{label}: dataset '{name}' is {ds.task} data but the study's task is {spec.task}")


def run(args: argparse.Namespace) -> int:
    from tuner.artifacts import resolve_artifacts_dir
    from tuner.commands.status import collect_status, print_status
    from tuner.service import StudyService
    from tuner.storage import ENV_STORAGE, open_storage, resolve_url
    from tuner.study import load_spec
    from tuner.workers import aggregate, plan_workers, run_workers

    # 1. everything the user gave is checked before the storage is touched
    spec = load_spec(args.study)
    url = resolve_url(args.storage)
    plans = plan_workers(args.workers, args.gpus)
    if args.grace_period <= args.heartbeat_interval:
        raise TunerError(f"--grace-period {args.grace_period} must be longer than --heartbeat-interval "
                         f"{args.heartbeat_interval}")
    check_inputs(spec)
    artifacts = None if args.no_artifacts else resolve_artifacts_dir(url, args.artifacts)

    # 2. study + queue
    handle = open_storage(url, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    service = StudyService(spec, handle, args.study_name)
    start = time.perf_counter()
    if args.retry_failed:
        service.reset_retries(service.create_or_load())
    study, progress = service.prepare()
    what = f"{spec.n_cells} cells" if spec.is_grid else f"{spec.n_trials} trials"
    print(f"study '{service.name}' ({spec.file_label}) on {handle.masked}: {what}, "
          f"{progress.complete} complete, {len(plans)} worker(s)", file=sys.stderr, flush=True)
    if progress.finished and progress.complete + progress.pruned >= progress.target:
        print("nothing to do: the study is complete", file=sys.stderr)
        codes: list[int] = []
    else:
        handle.close()  # the parent holds no connection while workers run
        worker_args = ["--study", str(spec.path), "--study-name", service.name,
                       "--heartbeat-interval", str(args.heartbeat_interval), "--grace-period", str(args.grace_period)]
        worker_args += ["--no-artifacts"] if artifacts is None else ["--artifacts", str(artifacts)]
        env = dict(os.environ)
        env[ENV_STORAGE] = url
        codes = run_workers(plans, worker_args, env)
    wall = time.perf_counter() - start

    status = collect_status(service)
    status["wall_s"] = round(wall, 2)
    status["worker_exit_codes"] = codes
    if args.json:
        print_json(status)
    else:
        print_status(status)
        print(f"wall time {wall:.1f}s")
    handle.close()
    p = status["progress"]
    done = p["complete"] + p["pruned"] >= p["target"] and p["running"] == 0 and p["waiting"] == 0
    if done and not any(c == 130 for c in codes):
        return 0
    return aggregate(codes) or 1
