"""A study run by a real SLURM cluster: ``python -m tuner slurm`` submits a job array through sbatch,
each task runs a real ``tuner worker`` (tiny random-init BERT, tiny data) against PostgreSQL.

- a 4-task array on a 4-cell grid: every cell COMPLETE exactly once, each task pinned to its own
  (fake) GPU by SLURM, ``tuner status`` shows the study done;
- faults mid-trial: one task SIGKILLed (its trial failed by the heartbeat check), one scancelled,
  one pre-empted by a signal (it requeues itself) and one requeued by SLURM (``scontrol requeue``):
  every interrupted trial is FAIL and its cell re-run to COMPLETE, no cell COMPLETE twice;
- more tasks than cells: the extra tasks exit 0 and say "nothing to do";
- without a cluster: the batch script ``--dry-run`` prints, and the storages an array cannot share.

The cluster comes from ``tests/_slurm.py`` (``scripts/slurm/start_local_cluster.sh``); each test
prints its array size, cells and wall time (``pytest -s`` shows them).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _slurm import array_states, cancel, release, require_slurm, task_records, tuner_slurm, wait_array_done, wait_for
from _tiny import PG_URL, env_with_repo, require_server, unique, write_grid_study
from tuner.storage import delete_study, open_storage
from tuner.study import cell_key

HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "4"]
_submitted: list[str] = []  # job ids, cancelled after each test if still there


@pytest.fixture(autouse=True)
def cancel_leftovers():
    yield
    while _submitted:
        job = _submitted.pop()
        if array_states(job):
            cancel(job)


@pytest.fixture
def cluster() -> str:
    """The PostgreSQL URL, once both it and SLURM answer."""
    require_server(PG_URL)
    require_slurm()
    return PG_URL


@pytest.fixture
def study_name(cluster):
    names: list[str] = []
    yield lambda prefix: names.append(unique(prefix)) or names[-1]
    handle = open_storage(cluster, heartbeat_interval=None, grace_period=None)
    try:
        for name in names:
            delete_study(handle, name)
    finally:
        handle.close()


def trials_of(name: str) -> list:
    handle = open_storage(PG_URL, heartbeat_interval=None, grace_period=None)
    try:
        try:
            study_id = handle.storage.get_study_id_from_name(name)
        except KeyError:
            return []
        return handle.storage.get_all_trials(study_id)
    finally:
        handle.close()


def complete_per_cell(trials: list) -> Counter:
    """``loss/dataset`` -> how many COMPLETE trials that grid cell has."""
    return Counter(f"{t.params['loss']}/{t.params['dataset']}" for t in trials if t.state.name == "COMPLETE")


def outputs(folder: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(folder.glob("task-*.out")))


def output_of(folder: Path, task: int) -> str:
    path = folder / f"task-{task}.out"
    return path.read_text() if path.exists() else ""


def submit(tmp_path: Path, study: Path, tasks: int, *more: str) -> tuple[str, str]:
    job, said = tuner_slurm(["--study", str(study), "--storage", PG_URL, "--array", str(tasks),
                             "--cpus-per-task", "1", "--gpus-per-task", "1", "--no-artifacts",
                             "--output", str(tmp_path / "task-%a.out"), *HEARTBEAT, *more], cwd=tmp_path)
    _submitted.append(job)
    return job, said


def report(title: str, **facts) -> str:
    line = f"SLURM {title}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in facts.items())
    print("\n" + line, flush=True)
    return line


@pytest.mark.slow
@pytest.mark.db
def test_grid_four_task_array_runs_every_cell_once(tmp_path, tiny_model_dir, tiny_data_dir, study_name):
    name = study_name("slurm-grid")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                             datasets=("stsb", "sickr"))
    start = time.monotonic()
    job, said = submit(tmp_path, study, 4)
    assert "4 task(s)" in said and "0/4 cells done, 4 to run" in said and f"squeue -j {job}" in said
    wait_array_done(job, timeout=420, outputs=lambda: outputs(tmp_path))
    wall = time.monotonic() - start

    trials = trials_of(name)
    per_cell = complete_per_cell(trials)
    records = task_records(job)
    text = outputs(tmp_path)
    line = report("grid", array_tasks=4, cells=4, complete_per_cell=dict(per_cell), trials=len(trials),
                  task_states={i: (r["JobState"], r["ExitCode"]) for i, r in sorted(records.items())},
                  wall_s=f"{wall:.1f}")
    assert len(per_cell) == 4 and set(per_cell.values()) == {1} and len(trials) == 4, f"{line}\n{text[-4000:]}"
    assert sorted(records) == [0, 1, 2, 3], line
    assert all(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in records.values()), f"{line}\n{text}"
    gpus = [output_of(tmp_path, i).split("CUDA_VISIBLE_DEVICES=", 1)[1].split()[0] for i in range(4)]
    assert "none" not in gpus and len(set(gpus)) == 4, f"each task gets its own GPU from SLURM: {gpus}"

    status = subprocess.run([sys.executable, "-m", "tuner", "status", "--study", str(study), "--storage", PG_URL],
                            env=env_with_repo(), text=True, capture_output=True, timeout=120)
    assert status.returncode == 0 and "4/4 cells complete" in status.stdout, status.stdout + status.stderr


def reruns_of(trials: dict, failed) -> list:
    """The COMPLETE trials of ``failed``'s grid cell."""
    return [t for t in trials.values() if t.state.name == "COMPLETE" and cell_key(t.params) == cell_key(failed.params)]


def worker_pid(trial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def running_tasks(name: str, job: str) -> dict[int, object]:
    """Array task index -> the trial it is running now (from the worker pid's SLURM environment)."""
    found = {}
    for t in trials_of(name):
        if t.state.name != "RUNNING" or "worker" not in t.user_attrs:
            continue
        pid = worker_pid(t)
        try:
            raw = Path(f"/proc/{pid}/environ").read_text().split("\0")
            env = dict(item.split("=", 1) for item in raw if "=" in item)
        except OSError:
            continue  # gone already
        if env.get("SLURM_ARRAY_JOB_ID") == job and env.get("SLURM_ARRAY_TASK_ID", "").isdigit():
            found[int(env["SLURM_ARRAY_TASK_ID"])] = t
    return found


@pytest.mark.slow
@pytest.mark.db
def test_cancelled_killed_and_preempted_tasks_trials_are_rerun_once(tmp_path, tiny_model_dir, tiny_data_dir,
                                                                     study_name):
    name = study_name("slurm-faults")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                             datasets=("stsb", "sickr"))
    # trials of ~10-20 s, so each task is in one when its signal lands (one cell per task)
    study.write_text(study.read_text().replace("epochs = 1", "epochs = 1\nmax_steps = 150"))
    start = time.monotonic()
    job, _ = submit(tmp_path, study, 4)
    show = lambda: outputs(tmp_path)  # noqa: E731
    # each action hits a task while it runs a trial; each task gets one
    # (scancel --signal=KILL is a plain cancel: SIGTERM first; a worker killed outright is the OOM killer's kill -9)
    actions = [("worker SIGKILLed (OOM killer)", lambda t: os.kill(worker_pid(hit_trials[t]), signal.SIGKILL)),
               ("scancel", lambda t: cancel(f"{job}_{t}")),
               ("pre-empted: scancel --signal=TERM", lambda t: cancel(f"{job}_{t}", "--signal=TERM")),
               ("requeued by SLURM: scontrol requeue", lambda t: subprocess.run(
                   ["scontrol", "requeue", f"{job}_{t}"], capture_output=True, timeout=30))]
    hit: dict[int, tuple[str, object]] = {}
    hit_trials: dict[int, object] = {}
    for what, act in actions:
        task, trial = wait_for(lambda: next(((i, t) for i, t in running_tasks(name, job).items() if i not in hit),
                                            None),
                               timeout=300, what=f"a task running a trial to {what}", job=job, interval=0.3,
                               outputs=show)
        hit_trials[task] = trial
        act(task)
        hit[task] = (what, trial)
    preempted = [t for t, (what, _) in hit.items() if what.startswith(("pre-empted", "requeued"))]
    for task in preempted:  # requeued tasks wait 120 s (BeginTime) before they start again: start them now
        wait_for(lambda: array_states(job).get(task) == "PENDING", 120, f"task {task} to be requeued", job,
                 outputs=show)
        release(f"{job}_{task}")
    wait_array_done(job, timeout=480, outputs=show)
    wall = time.monotonic() - start

    trials = {t.number: t for t in trials_of(name)}
    per_cell = complete_per_cell(list(trials.values()))
    records = task_records(job)
    text = outputs(tmp_path)
    reruns = {}
    for task, (what, trial) in sorted(hit.items()):
        after = trials[trial.number]
        redo = reruns_of(trials, trial)
        reruns[task] = (what, f"trial {trial.number} {after.state.name} '{after.user_attrs.get('failure', '')[:60]}'",
                        f"re-run as trial {[t.number for t in redo]}")
    line = report("faults", array_tasks=4, cells=4, complete_per_cell=dict(per_cell), trials=len(trials),
                  failed_then_rerun=reruns, restarts={i: r.get("Restarts") for i, r in sorted(records.items())},
                  wall_s=f"{wall:.1f}")
    assert len(per_cell) == 4 and set(per_cell.values()) == {1}, f"{line}\n{text[-5000:]}"
    for task, (what, trial) in hit.items():
        after = trials[trial.number]
        failure = after.user_attrs.get("failure", "")
        assert after.state.name == "FAIL", f"{what}: {line}"
        expected = "worker lost" if "SIGKILL" in what else "interrupted"
        assert failure.startswith(expected), f"{what}: {failure!r}\n{line}"
        redo = reruns_of(trials, trial)
        assert len(redo) == 1 and redo[0].number > trial.number, f"{what}: {line}"
    for task, (what, _) in hit.items():
        assert records[task]["Restarts"] == ("1" if task in preempted else "0"), f"{what}: {records[task]}"
        if task not in preempted:  # cancelled or killed: not requeued, its cell re-run by the others
            assert records[task]["JobState"] in ("CANCELLED", "FAILED"), f"{what}: {records[task]}"
    for task in preempted:
        assert records[task]["JobState"] == "COMPLETED" and records[task]["ExitCode"] == "0:0", records[task]
    self_requeued = next(t for t, (what, _) in hit.items() if what.startswith("pre-empted"))
    assert "requeueing this task" in output_of(tmp_path, self_requeued), output_of(tmp_path, self_requeued)


@pytest.mark.slow
@pytest.mark.db
def test_more_tasks_than_cells_extra_tasks_exit_0_with_nothing_to_do(tmp_path, tiny_model_dir, tiny_data_dir,
                                                                     study_name):
    name = study_name("slurm-extra")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse",),
                             datasets=("stsb", "sickr"))
    start = time.monotonic()
    job, said = submit(tmp_path, study, 4)
    assert "more tasks than cells" in said, said
    wait_array_done(job, timeout=420, outputs=lambda: outputs(tmp_path))
    wall = time.monotonic() - start

    trials = trials_of(name)
    per_cell = complete_per_cell(trials)
    records = task_records(job)
    idle = [i for i in range(4) if "nothing to do" in output_of(tmp_path, i)]
    line = report("more tasks than cells", array_tasks=4, cells=2, complete_per_cell=dict(per_cell),
                  nothing_to_do_tasks=idle, exit_codes={i: r["ExitCode"] for i, r in sorted(records.items())},
                  wall_s=f"{wall:.1f}")
    assert len(per_cell) == 2 and set(per_cell.values()) == {1} and len(trials) == 2, line
    assert all(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in records.values()), line
    assert len(idle) == 2, f"{line}\n{outputs(tmp_path)}"
    ran = {i for i in range(4) if " trial " in output_of(tmp_path, i) and "COMPLETE" in output_of(tmp_path, i)}
    assert ran.isdisjoint(idle) and len(ran) == 2, f"{line}\n{outputs(tmp_path)}"


# ------------------------------------------------------------------ the batch script, no cluster needed


def dry_run(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    from tuner.cli import main

    study = write_grid_study(tmp_path, "slurm-dry", None, tmp_path, losses=("cos_mse", "cosent"), datasets=("stsb",),
                             models=["m"])
    code = main(["slurm", "--study", str(study), "--dry-run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_a_requeueable_gpu_array_script_without_the_password(tmp_path, capsys):
    code, script, err = dry_run(tmp_path, capsys, "--storage", "postgresql://tuner:s3cret@db.example/tuner",
                                "--array", "8", "--max-running", "4", "--time", "04:00:00", "--partition", "gpu",
                                "--", "--account=proj", "--mem=16G")
    assert code == 0, err
    for line in ("#SBATCH --array=0-7%4", "#SBATCH --ntasks=1", "#SBATCH --gpus-per-task=1", "#SBATCH --requeue",
                 "#SBATCH --signal=TERM@120", "#SBATCH --time=04:00:00", "#SBATCH --partition=gpu",
                 "#SBATCH --job-name=tuner-slurm-dry"):
        assert line + "\n" in script, line
    assert "s3cret" not in script and "tuner:***@db.example" in script
    assert "-m tuner worker --study " + str(tmp_path / "slurm-dry.toml") in script
    assert "sbatch --parsable --account=proj --mem=16G" in err
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid bash

    code, cpu, _ = dry_run(tmp_path, capsys, "--storage", "mysql://root@db.example/tuner", "--array", "2",
                           "--gpus-per-task", "0")
    assert code == 0 and "#SBATCH --gpus-per-task" not in cpu and "#SBATCH --array=0-1\n" in cpu


def test_storages_an_array_cannot_share_are_refused_in_one_line(tmp_path, capsys):
    code, _, err = dry_run(tmp_path, capsys, "--storage", f"sqlite:///{tmp_path / 'tuner.db'}", "--array", "2")
    assert code == 2 and err.count("\n") == 1 and "SQLite file" in err and "other nodes" in err, err
    code, _, err = dry_run(tmp_path, capsys, "--storage", "sqlite:///:memory:", "--array", "2")
    assert code == 2 and "lives inside one process" in err, err
    code, _, err = dry_run(tmp_path, capsys, "--storage", f"sqlite:///{tmp_path / 'tuner.db'}", "--array", "2",
                           "--", "--nodelist=node7")
    assert code == 0, err  # one node may share an SQLite file
    code, _, err = dry_run(tmp_path, capsys, "--storage", "postgresql://db.example/t", "--array", "2",
                           "--time", "soon")
    assert code == 2 and "--time soon" in err, err
