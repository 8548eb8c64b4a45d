"""``tuner slurm``: run a study as a SLURM job array, one ``tuner worker`` per allocated GPU.

Writes an sbatch script (the template :data:`TEMPLATE` below is the only copy) and submits it with
``sbatch``: ``--array 0-(N-1)``, each array task asks for ``--gpus-per-task`` GPUs and runs one
``python -m tuner worker`` per GPU with ``srun`` (SLURM sets ``CUDA_VISIBLE_DEVICES``). The storage
URL travels in the job's environment (``$TUNER_STORAGE``), never in the script. Tasks are
requeueable: a worker stopped by a signal (``--signal`` before the time limit, ``scancel --signal``,
pre-emption) fails its running trial as interrupted, and the task requeues itself (at most
``--max-requeues`` times); a task killed outright leaves its trial to the heartbeat check of the
other workers. A task that finds no cell to run exits 0 and says "nothing to do".
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from tuner.commands.common import add_storage_args, is_loopback, positive_int
from tuner.errors import TunerError
from tuner.service import StudyService
from tuner.service._orchestrate import check_heartbeat
from tuner.storage import ENV_STORAGE, dialect_of, mask_url, open_storage, require_shared, resolve_url
from tuner.study import load_spec

TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # SLURM's --time: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]

#: The batch script; @NAME@ fields are filled in by :func:`batch_script`.
TEMPLATE = """\
#!/bin/bash
# tuner study '@STUDY_NAME@' (@STUDY_FILE@): @WHAT@, @TASKS@ array task(s), @PER_TASK@.
# Written by `python -m tuner slurm`. The storage URL comes from $TUNER_STORAGE in the submitting
# environment (sbatch exports it; it is not written here): to submit this file by hand run
#   export TUNER_STORAGE=@MASKED_URL@    # with the real password
#   sbatch THIS_FILE
#SBATCH --job-name=@JOB_NAME@
#SBATCH --array=@ARRAY@
#SBATCH --ntasks=@NTASKS@
#SBATCH --cpus-per-task=@CPUS@
@GPU_LINE@#SBATCH --requeue
#SBATCH --signal=TERM@@STOP_BEFORE@
#SBATCH --open-mode=append
#SBATCH --output=@OUTPUT@
@EXTRA_LINES@
set -uo pipefail
: "${TUNER_STORAGE:?set TUNER_STORAGE to the study storage URL before sbatch}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} TUNER_WORKER_THREADS=${SLURM_CPUS_PER_TASK:-1}
task=${SLURM_ARRAY_TASK_ID:-0}
echo "tuner: array task $task (job ${SLURM_JOB_ID:-?}, restart ${SLURM_RESTART_COUNT:-0})" \
  "on $(hostname) at $(date '+%F %T')"

# one worker per SLURM task, each on the GPU SLURM gave it (a list of several: the task's own one)
srun --kill-on-bad-exit=0 bash -c '
  if [ -z "${CUDA_VISIBLE_DEVICES:-}" ] && [ -n "${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-}}" ]; then
    export CUDA_VISIBLE_DEVICES=${SLURM_STEP_GPUS:-$SLURM_JOB_GPUS}
  fi
  IFS=, read -ra gpus <<< "${CUDA_VISIBLE_DEVICES:-}"
  if [ "${#gpus[@]}" -gt 1 ]; then export CUDA_VISIBLE_DEVICES=${gpus[$(( ${SLURM_LOCALID:-0} % ${#gpus[@]} ))]}; fi
  index=$(( ${SLURM_ARRAY_TASK_ID:-0} * ${SLURM_NTASKS:-1} + ${SLURM_PROCID:-0} ))
  echo "tuner: worker $index on $(hostname): CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-none}"
  exec "$@" --worker-index "$index"
' tuner-worker @WORKER_ARGS@
rc=$?
if [ "$rc" -eq 130 ]; then
  if [ "${SLURM_RESTART_COUNT:-0}" -lt @MAX_REQUEUES@ ]; then
    echo "tuner: array task $task: stopped by a signal (time limit near, or pre-empted); requeueing this task"
    # this task only: an array's last task has the array's own job id, which names every task
    scontrol requeue "${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}${SLURM_ARRAY_JOB_ID:+_$task}" \
      || echo "tuner: array task $task: could not requeue (the other tasks re-run its cell)"
  else
    echo "tuner: array task $task: stopped by a signal after @MAX_REQUEUES@ requeue(s); not requeued again"
  fi
fi
echo "tuner: array task $task exits with $rc at $(date '+%F %T')"
exit "$rc"
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("slurm", help="run a study as a SLURM job array (one worker per GPU)",
                       description="Submit a SLURM job array of N tasks for a study on a server storage "
                                   "(PostgreSQL/MySQL, or a storage-proxy grpc:// URL): each task runs one "
                                   "`tuner worker` per allocated GPU until the study is finished. Grid cells run "
                                   "exactly once; a cancelled, pre-empted or killed task's trial is failed and "
                                   "re-run. "
                                   "Arguments after -- go to sbatch. Watch with squeue and `tuner status`.",
                       epilog="example: python -m tuner slurm --study sts-grid --storage postgresql://u:p@db/tuner "
                              "--array 8 --time 04:00:00 -- --account=myproj")
    p.add_argument("--study", required=True,
                   help="study name from studies/ or a .toml path (must be readable on the nodes)")
    add_storage_args(p, heartbeat=True)
    p.add_argument("--array", type=positive_int, required=True, metavar="N", help="number of array tasks")
    p.add_argument("--max-running", type=positive_int, default=None, metavar="K",
                   help="run at most K array tasks at once (sbatch --array=0-(N-1)%%K)")
    p.add_argument("--gpus-per-task", type=int, default=1, metavar="G",
                   help="GPUs per array task, one worker on each (default 1; 0: one CPU worker per task)")
    p.add_argument("--cpus-per-task", type=positive_int, default=4, metavar="C",
                   help="CPU cores per worker (default 4; torch threads)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    p.add_argument("--time", default=None, metavar="TIME", help="time limit per task, e.g. 04:00:00 or 1-00:00:00")
    p.add_argument("--job-name", default=None, help="job name (default tuner-<study name>)")
    p.add_argument("--output", default=None, metavar="PATTERN",
                   help="task output files (default slurm-%%x-%%A_%%a.out: job name, array id, task; in the "
                        "submit folder, appended on requeue)")
    p.add_argument("--stop-before", type=positive_int, default=120, metavar="SECONDS",
                   help="SIGTERM the workers this long before the time limit: the running trial is failed as "
                        "interrupted and the task requeues itself (default 120)")
    p.add_argument("--max-requeues", type=int, default=3, metavar="R",
                   help="a task stopped by a signal requeues itself at most R times (default 3; 0: never)")
    p.add_argument("--artifacts", default=None,
                   help="folder for trial artifacts, shared by all nodes (default ./artifacts)")
    p.add_argument("--no-artifacts", action="store_true", help="do not write trial artifacts")
    p.add_argument("--python", default=sys.executable, help="Python on the nodes (default: this one, %(default)s)")
    p.add_argument("--script", default=None, metavar="FILE", help="also write the batch script to FILE")
    p.add_argument("--dry-run", action="store_true",
                   help="print the batch script and the sbatch command; submit nothing")
    p.add_argument("sbatch_args", nargs="*", metavar="-- SBATCH_ARG", help="more sbatch options, after --")
    p.set_defaults(func=run)


def study_argument(study: str) -> str:
    """What the nodes get for ``--study``: an absolute path for a file, a name as it is."""
    path = Path(study)
    if path.suffix == ".toml" or path.exists():
        return str(path.resolve())
    return study


def single_node(sbatch_args: Sequence[str]) -> bool:
    """True when the extra sbatch options pin the whole array to one node (``-w host``, ``--nodelist=host``)."""
    args = list(sbatch_args)
    for i, arg in enumerate(args):
        value = None
        if arg in ("-w", "--nodelist") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--nodelist="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-w") and len(arg) > 2:
            value = arg[2:]
        if value is not None:
            return not any(c in value for c in ",[")
    return False


def check_storage(url: str, sbatch_args: Sequence[str]) -> Optional[str]:
    """Refuse a storage the array's tasks cannot share; returns a warning line or None."""
    require_shared(url, "a SLURM job array runs its workers in separate processes")
    if dialect_of(url) == "sqlite" and not single_node(sbatch_args):
        raise TunerError(f"storage {mask_url(url)} is an SQLite file and the array's tasks may run on other nodes, "
                         "which cannot share it (SQLite over a network filesystem loses writes); use "
                         "postgresql://... or mysql://..., a tuner storage-proxy (grpcs://host:port), or pin the "
                         "array to one node with -- --nodelist=HOST")
    host = url.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if dialect_of(url) != "sqlite" and host and is_loopback(host) and not single_node(sbatch_args):
        return (f"warning: storage host {host} is the machine each task runs on, not this one; use the database "
                "server's name unless the cluster is this one machine")
    return None


def batch_script(args: argparse.Namespace, spec: object, study: str, url: str) -> str:
    """The sbatch script for ``args`` (the study ``spec`` loaded from ``study``)."""
    gpus = args.gpus_per_task
    worker = [args.python, "-m", "tuner", "worker", "--study", study, "--study-name", args.study_name or spec.name,
              "--heartbeat-interval", str(args.heartbeat_interval), "--grace-period", str(args.grace_period)]
    if args.no_artifacts:
        worker.append("--no-artifacts")
    elif args.artifacts:
        worker += ["--artifacts", str(Path(args.artifacts).resolve())]
    extra = [f"#SBATCH --partition={args.partition}"] if args.partition else []
    extra += [f"#SBATCH --time={args.time}"] if args.time else []
    what = f"{spec.n_cells} grid cells" if spec.is_grid else f"{spec.n_trials} trials"
    fields = {
        "STUDY_NAME": args.study_name or spec.name, "STUDY_FILE": spec.file_label, "WHAT": what,
        "TASKS": str(args.array), "MASKED_URL": mask_url(url),
        "PER_TASK": f"{gpus} GPU(s) and worker(s) each" if gpus else "one CPU worker each",
        "JOB_NAME": args.job_name or f"tuner-{spec.name}",
        "ARRAY": f"0-{args.array - 1}" + (f"%{args.max_running}" if args.max_running else ""),
        "NTASKS": str(max(gpus, 1)), "CPUS": str(args.cpus_per_task),
        "GPU_LINE": "#SBATCH --gpus-per-task=1\n" if gpus else "",
        "STOP_BEFORE": str(args.stop_before), "OUTPUT": args.output or "slurm-%x-%A_%a.out",
        "EXTRA_LINES": "\n".join(extra),
        "WORKER_ARGS": " ".join(shlex.quote(a) for a in worker), "MAX_REQUEUES": str(args.max_requeues),
    }
    text = TEMPLATE
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    return text.replace("\n\nset -uo", "\nset -uo")  # no blank line where no extra #SBATCH lines went


def check_args(args: argparse.Namespace) -> None:
    if args.gpus_per_task < 0:
        raise TunerError(f"--gpus-per-task {args.gpus_per_task}: use 0 (CPU) or more GPUs per array task")
    if args.max_requeues < 0:
        raise TunerError(f"--max-requeues {args.max_requeues}: use 0 or more")
    if args.time is not None and not TIME_RE.match(args.time):
        raise TunerError(f"--time {args.time}: write minutes, HH:MM:SS or D-HH:MM:SS (SLURM's --time)")
    if args.artifacts and args.no_artifacts:
        raise TunerError("--artifacts and --no-artifacts: choose one")
    check_heartbeat(args.heartbeat_interval, args.grace_period)


def prepare_study(spec: object, url: str, name: Optional[str], heartbeat: int, grace: int) -> str:
    """Create the study and queue its first cells (so ``tuner status`` shows it at once, and a wrong URL
    is one error line here, not N failed tasks); returns a line about its progress."""
    handle = open_storage(url, heartbeat_interval=heartbeat, grace_period=grace)
    try:
        _, progress = StudyService(spec, handle, name).prepare()
    finally:
        handle.close()
    left = max(0, progress.target - progress.complete - progress.pruned)
    unit = "cells" if spec.is_grid else "trials"
    return f"{progress.complete + progress.pruned}/{progress.target} {unit} done, {left} to run"


def run(args: argparse.Namespace) -> int:
    check_args(args)
    extras = [a for a in args.sbatch_args if a != "--"]
    url = resolve_url(args.storage)
    warning = check_storage(url, extras)
    study = study_argument(args.study)
    spec = load_spec(study)
    text = batch_script(args, spec, study, url)
    command = ["sbatch", "--parsable", *extras]
    if args.script:
        Path(args.script).write_text(text)
    if args.dry_run:
        print(text, end="", flush=True)
        print(f"# submit with: TUNER_STORAGE=... {shlex.join(command)} < SCRIPT", file=sys.stderr)
        return 0
    if warning:
        print(warning, file=sys.stderr)
    if shutil.which("sbatch") is None:
        raise TunerError("sbatch is not on PATH: run this on a SLURM login node (or use --dry-run to see the script)")
    done = prepare_study(spec, url, args.study_name, args.heartbeat_interval, args.grace_period)
    name = args.study_name or spec.name
    result = subprocess.run(command, input=text, text=True, capture_output=True,
                            env={**os.environ, ENV_STORAGE: url}, timeout=120)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "(no output)").strip().splitlines() or ["(no output)"]
        raise TunerError(f"sbatch failed (exit {result.returncode}): {lines[-1]}")
    job = result.stdout.strip().split(";")[0]
    print(f"submitted job array {job}: {args.array} task(s) for study '{name}' on {mask_url(url)} ({done})")
    if args.array > (spec.n_cells if spec.is_grid else spec.n_trials or 0):
        print(f"note: more tasks than {'cells' if spec.is_grid else 'trials'}: the extra tasks say "
              "'nothing to do' and exit 0")
    shown = "" if args.storage is None else f" --storage '{mask_url(url)}'"
    print(f"watch:  squeue -j {job}    python -m tuner status --study {shlex.quote(study)}{shown}")
    print(f"stop:   scancel {job}      (running trials are failed as interrupted and re-run on resume)")
    return 0
