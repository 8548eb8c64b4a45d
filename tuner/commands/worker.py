"""``tuner worker``: one worker process of a study (``optimize`` starts these).

Runs trials until the study is finished. Start it by hand to add a worker to a running study
(e.g. on another machine: ``TUNER_STORAGE=postgresql://... python -m tuner worker --study sts``).
argparse -> :func:`tuner.service._orchestrate.run_worker`. Exit status: 0 finished, 1 cells/trials gave up
after their retries, 130 stopped by a signal.
"""
from __future__ import annotations

import argparse

from tuner.commands.common import add_storage_args, positive_int
from tuner.service._orchestrate import run_worker
from tuner.service._tracking import CLI_HELP as MLFLOW_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run one worker of a study (optimize starts these)",
                       description="Run trials of a study until it is finished; several workers (processes or "
                                   "machines) may run against one storage. optimize starts one per GPU / CPU share.")
    p.add_argument("--study", required=True, help="study name from studies/ or a .toml path")
    add_storage_args(p, heartbeat=True)
    p.add_argument("--worker-index", type=int, default=0, help="index of this worker (seeds its sampler)")
    p.add_argument("--artifacts", default=None, help="folder for trial artifacts (see optimize --help)")
    p.add_argument("--no-artifacts", action="store_true", help="do not write trial artifacts")
    p.add_argument("--max-trials", type=positive_int, default=None, help="stop after this many trials")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if visible, else cpu)")
    p.add_argument("--mlflow", metavar="URI", default=None, help=MLFLOW_HELP)
    p.add_argument("--progress", action="store_true", help="show a progress bar per trial")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_worker(args.study, args.storage, study_name=args.study_name, worker_index=args.worker_index,
                      max_trials=args.max_trials, device=args.device,
                      artifacts=False if args.no_artifacts else args.artifacts, progress=args.progress,
                      heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period, mlflow=args.mlflow)
