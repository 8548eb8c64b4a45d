"""``tuner optimize``: run a study (``studies/NAME.toml`` or a path) with N worker processes.

argparse -> :func:`tuner.service._orchestrate.run_study` -> print. Re-running the same command resumes the
study: finished trials and complete grid cells are kept.
"""
from __future__ import annotations

import argparse

from tuner.commands.common import (add_data_dir, add_data_study_args, add_storage_args, positive_int, print_json,
                                   study_folder_for)
from tuner.errors import TunerError
from tuner.service._orchestrate import exit_code, run_study
from tuner.service._status import format_status
from tuner.service._tracking import CLI_HELP as MLFLOW_HELP
from tuner.study.template import write_study_for_data


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="run a study with one or more worker processes",
                       description="Run the study described by a study file with N worker processes sharing one "
                                   "storage. Grid studies run every cell exactly once to COMPLETE (failed cells and "
                                   "cells of dead workers are re-run, up to max_retries); TPE studies run n_trials. "
                                   "Run the same command again to resume, or on several machines with one "
                                   "PostgreSQL/MySQL URL for one distributed study. Ctrl-C stops cleanly.")
    p.add_argument("--study", default=None, help="study name from studies/ (python -m tuner studies) or a .toml path")
    add_data_study_args(p, required=False)  # instead of --study: a study for your data, written beside the storage
    add_data_dir(p)
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
    p.add_argument("--warm-start", metavar="STUDY", default=None,
                   help="enqueue the best --warm-start-k complete trials of STUDY (same storage; another model, "
                        "dataset or budget) as the first trials, once; parameters outside this study's search "
                        "space are dropped (tpe/random studies; default: the study file's warm_start)")
    p.add_argument("--warm-start-k", metavar="K", type=positive_int, default=None,
                   help="how many of its best trials --warm-start enqueues (default: the file's k, else 5)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress line (default: done/total, best, elapsed and ETA redrawn in place on a "
                        "terminal; a plain line per finished trial otherwise)")
    p.add_argument("--progress-interval", metavar="SECONDS", type=positive_int, default=None,
                   help="when stderr is not a terminal: a progress line at most this often between finished "
                        "trials (default $TUNER_PROGRESS_INTERVAL or 60)")
    p.add_argument("--mlflow", metavar="URI", default=None, help=MLFLOW_HELP)
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.study is None) == (args.train is None):
        raise TunerError("pass --study NAME_OR_FILE, or --train FILE [--eval FILE] for a study on your own data "
                         "(not both)")
    if args.study is not None and (args.eval or args.model or args.n_trials or args.data_dir):
        raise TunerError("--eval, --model, --n-trials and --data-dir go with --train; with --study, set them in the "
                         "study file")
    study = args.study or write_study_for_data(args.train, args.eval, study_folder_for(args.storage), model=args.model,
                                               n_trials=args.n_trials, data_dir=args.data_dir)
    status = run_study(study, args.storage, workers=args.workers, gpus=args.gpus, study_name=args.study_name,
                       artifacts=False if args.no_artifacts else args.artifacts, retry_failed=args.retry_failed,
                       heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                       progress=not args.no_progress, progress_interval=args.progress_interval,
                       warm_start=args.warm_start, warm_start_k=args.warm_start_k, mlflow=args.mlflow)
    if args.json:
        print_json(status)
    else:
        print(format_status(status))
        print(f"wall time {status['wall_s']:.1f}s")
    return exit_code(status)
