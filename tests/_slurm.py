"""A real SLURM cluster for the tests (like the PostgreSQL fixture): ``sinfo`` answers, or
``scripts/slurm/start_local_cluster.sh`` installs and starts a single-host one (munge, slurmctld,
slurmd with fake GPUs); where that cannot be done the test is skipped with one line, and fails
under CI (``$CI`` set), which must run it.

Plus the few commands the tests drive SLURM with: submit through ``python -m tuner slurm``, wait
for an array with ``squeue`` (always with a deadline), read each task's record with ``scontrol``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from _tiny import env_with_repo, poll

REPO = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO / "scripts" / "slurm" / "start_local_cluster.sh"
_checked: list[Optional[str]] = []  # one check per test session


def _sinfo_ok() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.startswith(("idle", "mixed", "allocated", "completing"))
                                       for s in out.stdout.split())


def slurm_problem() -> Optional[str]:
    """None when ``sbatch``/``squeue`` work here (starting the local cluster if needed), else why not."""
    if _checked:
        return _checked[0]
    problem = None
    if not _sinfo_ok():
        try:
            run = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=600)
            lines = (run.stderr or run.stdout).strip().splitlines()
            if run.returncode != 0 or not _sinfo_ok():
                problem = (lines[-1] if lines else f"{START_SCRIPT.name} exited {run.returncode}").removeprefix(
                    "slurm unavailable: ")
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"{START_SCRIPT.name}: {exc}"
    _checked.append(problem)
    return problem


def require_slurm() -> None:
    import pytest

    problem = slurm_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"SLURM unavailable: {problem} (CI must run the SLURM tests; .ci/run starts the cluster)")
    pytest.skip(f"SLURM unavailable: {problem}")


def tuner_slurm(args: list[str], cwd: Path, env: Optional[dict] = None) -> tuple[str, str]:
    """Run ``python -m tuner slurm ARGS`` (it submits with sbatch); returns (job id, its stdout)."""
    result = subprocess.run([sys.executable, "-m", "tuner", "slurm", *args], cwd=cwd, env=env_with_repo(env),
                            text=True, capture_output=True, timeout=180)
    assert result.returncode == 0, f"tuner slurm failed:\n{result.stdout}\n{result.stderr}"
    match = re.search(r"submitted job array (\d+)", result.stdout)
    assert match, result.stdout
    return match.group(1), result.stdout


def array_states(job: str) -> dict[int, str]:
    """Array task index -> squeue state (PENDING, RUNNING, ...) of the tasks still queued or running.
    A pending array shows as one ``JOB_[0-3]`` row; ``-r`` lists each task."""
    out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%K|%T"], capture_output=True, text=True,
                         timeout=30)
    states = {}
    for line in out.stdout.split():
        index, _, state = line.partition("|")
        if index.isdigit():
            states[int(index)] = state
    return states


def task_records(job: str) -> dict[int, dict[str, str]]:
    """Array task index -> ``scontrol show job`` fields (JobId, JobState, ExitCode, Restarts, ...);
    finished tasks stay listed for MinJobAge seconds (600 in the local cluster)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30)
    records = {}
    for line in out.stdout.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if fields.get("ArrayTaskId", "").isdigit():
            records[int(fields["ArrayTaskId"])] = fields
    return records


def wait_for(predicate: Callable[[], object], timeout: float, what: str, job: str, interval: float = 0.5,
             outputs: Optional[Callable[[], str]] = None):
    """Poll ``predicate`` until it is truthy; on timeout cancel ``job`` and fail with the task outputs."""
    value = poll(predicate, timeout, interval)
    if value:
        return value
    cancel(job)
    shown = outputs() if outputs is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (job {job}: squeue "
                         f"{array_states(job)})\n{shown[-6000:]}")


def wait_array_done(job: str, timeout: float, outputs: Optional[Callable[[], str]] = None) -> None:
    wait_for(lambda: not array_states(job), timeout, "the array to finish", job, interval=1.0, outputs=outputs)


def cancel(job: str, *options: str) -> None:
    subprocess.run(["scancel", *options, job], capture_output=True, text=True, timeout=30)


def release(job_task: str) -> None:
    """Start a requeued (PENDING) task now: SLURM holds a requeued job for 120 s (BeginTime); the tests do
    not wait that long. Not within the second it was killed in, though: slurmd refuses a job credential
    made in the same second as the revoked one ("Job credential revoked") and SLURM fails the task."""
    time.sleep(2.0)
    subprocess.run(["scontrol", "update", f"JobId={job_task}", "StartTime=now"], capture_output=True, text=True,
                   timeout=30)
