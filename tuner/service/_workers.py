"""Worker processes: one per GPU (pinned with CUDA_VISIBLE_DEVICES) or CPU cores split between them.

``optimize`` starts N ``python -m tuner worker`` processes against the same storage and waits.
Each worker runs in its own process group, so Ctrl-C reaches only this parent, which forwards it
once to every worker (each then fails its running trial with the reason and exits); a second
Ctrl-C kills them. Workers also get SIGTERM if the parent dies (Linux ``PR_SET_PDEATHSIG``).
The storage URL travels in the environment ($TUNER_STORAGE), never on a command line.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from tuner.errors import TunerError

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    gpu: Optional[str]  # physical id written to CUDA_VISIBLE_DEVICES; None: CPU; "": CPU with GPUs hidden
    threads: int

    def describe(self) -> str:
        where = f"GPU {self.gpu}" if self.gpu else f"CPU, {self.threads} thread{'s' * (self.threads > 1)}"
        return f"worker {self.index}: {where}"


def visible_gpus() -> list[str]:
    """Physical ids of the GPUs this process may use (respects CUDA_VISIBLE_DEVICES)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA
        count = 0
    if count == 0:
        return []
    if env is not None and env.strip():
        ids = [x.strip() for x in env.split(",") if x.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_workers(workers: Optional[int] = None, gpus: Optional[str] = None,
                 available: Optional[Sequence[str]] = None, cores: Optional[int] = None) -> list[WorkerPlan]:
    """Decide how many workers run where.

    ``gpus`` "0,1" picks GPUs by index among the visible ones (error if one does not exist);
    without it every visible GPU gets a worker; with no GPU the workers share the CPU cores.
    """
    if workers is not None and workers < 1:
        raise TunerError(f"--workers {workers}: use 1 or more worker processes")
    available = list(visible_gpus() if available is None else available)
    cores = cpu_count() if cores is None else cores
    chosen: list[str] = []
    hide = False
    if gpus is not None and str(gpus).strip() != "":
        text = str(gpus).strip()
        if text.lower() in ("none", "cpu"):
            hide = bool(available)
        else:
            for part in text.split(","):
                part = part.strip()
                if not part.isdigit():
                    raise TunerError(f"--gpus {text}: '{part}' is not a GPU index; write e.g. --gpus 0,1")
                if int(part) >= len(available):
                    have = f"{len(available)} visible GPU(s): 0..{len(available) - 1}" if available else "no visible GPU"
                    raise TunerError(f"--gpus {text}: there is no GPU {part} (this machine has {have}); "
                                     "choose from those or leave --gpus out")
                if available[int(part)] in chosen:
                    raise TunerError(f"--gpus {text}: GPU {part} is listed twice")
                chosen.append(available[int(part)])
    else:
        chosen = list(available)
    if chosen:
        n = workers or len(chosen)
        return [WorkerPlan(i, chosen[i % len(chosen)], max(1, cores // n)) for i in range(n)]
    n = workers or 1
    if n > cores:
        print(f"note: {n} workers on {cores} CPU core(s): each gets 1 thread and they compete for cores",
              file=sys.stderr)
    return [WorkerPlan(i, "" if hide else None, max(1, cores // n)) for i in range(n)]


def worker_env(plan: WorkerPlan, base: Optional[dict] = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if plan.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = plan.gpu
    threads = str(plan.threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TUNER_WORKER_THREADS"):
        env[var] = threads
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        os.setsid()
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def run_workers(plans: Sequence[WorkerPlan], worker_args: Sequence[str], env: dict[str, str],
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> list[int]:
    """Start one ``python -m tuner worker`` per plan, wait for all; returns their exit codes.

    SIGINT/SIGTERM to this process are forwarded once (workers stop after failing their running
    trial); a second one kills the workers.
    """
    procs: list[subprocess.Popen] = []
    signals_seen: list[int] = []

    def forward(signum: int, frame: object) -> None:
        signals_seen.append(signum)
        if len(signals_seen) == 1:
            log(f"stopping {len(procs)} worker(s): the running trials are marked failed (Ctrl-C again to kill)")
            for p in procs:
                if p.poll() is None:
                    try:
                        p.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        else:
            for p in procs:
                if p.poll() is None:
                    try:
                        p.kill()
                    except ProcessLookupError:
                        pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for plan in plans:
            args = [sys.executable, "-m", "tuner", "worker", *worker_args, "--worker-index", str(plan.index)]
            procs.append(subprocess.Popen(args, env=worker_env(plan, env), preexec_fn=_die_with_parent))
            log(f"started {plan.describe()} (pid {procs[-1].pid})")
            if signals_seen:
                break
        codes = []
        for p in procs:
            while True:
                try:
                    codes.append(p.wait())
                    break
                except KeyboardInterrupt:  # pragma: no cover - handler above replaces SIGINT
                    continue
        while len(codes) < len(plans):
            codes.append(130)
        return codes
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:
                p.kill()


def aggregate(codes: Sequence[int]) -> int:
    """0 when every worker finished cleanly; 130 if any was interrupted; else the first failure."""
    if all(c == 0 for c in codes):
        return 0
    if any(c in (130, -signal.SIGINT, -signal.SIGTERM) for c in codes):
        return 130
    return next(c for c in codes if c != 0) if any(c > 0 for c in codes) else 1
