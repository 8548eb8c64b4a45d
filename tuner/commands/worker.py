"""``tuner worker``: one worker process of a study (``optimize`` starts these).

Runs trials until the study is finished. Start it by hand to add a worker to a running study
(e.g. on another machine: ``TUNER_STORAGE=postgresql://... python -m tuner worker --study sts``).
Exit status: 0 finished, 1 cells/trials gave up after their retries, 130 stopped by a signal.
"""
from __future__ import annotations

import argparse
import os
import sys

from tuner.commands.common import positive_int
from tuner.commands.optimize import add_storage_args


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
    p.add_argument("--progress", action="store_true", help="show a progress bar per trial")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from objectives import get_objective
    from objectives.common import WorkerContext
    from tuner.artifacts import open_store, resolve_artifacts_dir
    from tuner.models import resolve_device
    from tuner.service import StudyService
    from tuner.storage import open_storage, resolve_url
    from tuner.study import load_spec

    threads = os.environ.get("TUNER_WORKER_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    spec = load_spec(args.study)
    url = resolve_url(args.storage)
    device = resolve_device(args.device)
    handle = open_storage(url, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    service = StudyService(spec, handle, args.study_name)
    store = None if args.no_artifacts else open_store(resolve_artifacts_dir(url, args.artifacts))
    ctx = WorkerContext(spec=spec, handle=handle, study_name=service.name, device=device, artifact_store=store,
                        progress=args.progress)
    objective = get_objective(spec.task)
    service.create_or_load()  # a hand-started worker may be the first one
    try:
        return service.run_worker(lambda trial, choice: objective(trial, choice, ctx),
                                  worker_index=args.worker_index, max_trials=args.max_trials)
    finally:
        handle.close()
        sys.stderr.flush()
