"""How many workers one storage carries: N worker processes with a synthetic objective (issue #15, part 2).

    nice -n 10 python bench/storage_scale.py                       # full run -> bench/results/storage_scale.{json,md}
    python bench/storage_scale.py --backends postgresql,proxy --workers 32 --samplers grid --window 20 --out /tmp/x

Each worker is tuner's real worker loop (:meth:`tuner.service._study_service.StudyService.run_worker`: study lock,
grid queue / TPE ask, heartbeats, tell) with an objective that trains nothing: it sleeps 0.5-3 s in
5 steps, reports an intermediate value and asks ``should_prune`` after each step, and sets the user
attributes a real trial sets (13 at the start, 2 scores and 4 more at the end). Workers are
forked from this process once the libraries are imported (starting 128 interpreters would take
minutes on 2 cores); each opens its own storage connection(s) after the fork, like a separate
worker. They start together, run for ``--window`` seconds, and are stopped with SIGTERM (a
running trial is failed as "interrupted", as on Ctrl-C).

Per backend, sampler and N it records: trials/s completed inside the window (and the ideal
N / mean trial length), p50/p99 of each storage call kind (``next`` = one pass of the worker's
step under the study lock: stale check, scan, grid queue pop or TPE ask; ``lock_wait``; ``tell``;
``report``; ``user_attr``; ``heartbeat``), storage calls and storage seconds per trial, lock hold
time, the server connections in use (the database's count, less what was there before), CPU
busy %, duplicates (a grid cell COMPLETE twice, or one trial told COMPLETE by two workers) and
lost trials (told COMPLETE by a worker but not COMPLETE in the storage, or left RUNNING after
every worker exited) - both must be 0 - and RSS / PSS per worker (PSS counts pages shared after
the fork once; an interpreter started on its own has about its RSS).

Backends: ``postgresql`` and ``mariadb`` (the servers on 127.0.0.1) and ``proxy``
(``python -m tuner storage-proxy`` in front of the PostgreSQL server). Other programs on the
machine share the CPUs and the servers; the JSON records the load average before each run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuner import jsonsafe  # noqa: E402  (the repo on sys.path first)

PG_URL = os.environ.get("TUNER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TUNER_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
LOSSES = ("cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle", "cosent+ibn+angle")
TRIAL_S = (0.5, 3.0)  # uniform: mean 1.75 s
STEPS = 5
WORKER_MB_GUESS = 120.0  # before a measurement: RSS of one worker, to keep N within memory


# ------------------------------------------------------------------ study files
def study_file(folder: Path, name: str, sampler: str, cells: int) -> Path:
    models = [f"synthetic-{i}" for i in range(max(1, math.ceil(cells / len(LOSSES))))]
    data_dir = folder / "data"
    data_dir.mkdir(exist_ok=True)
    head = f'name = "{name}"\ntask = "sts"\nmodels = {json.dumps(models)}\ndata_dir = "{data_dir}"\n'
    if sampler == "grid":
        body = ('sampler = "grid"\nprotocol = "seed"\nmax_retries = 2\n[data]\ndatasets = ["stsb"]\n'
                f'[budget]\nepochs = 1\n[train]\nbatch_size = 8\n[grid]\nlosses = {json.dumps(list(LOSSES))}\n')
    else:
        body = (f'sampler = "tpe"\npruner = "none"\nn_trials = {cells}\nmax_retries = 1\n[data]\ntrain = ["stsb"]\n'
                '[budget]\nepochs = 1\neval_every = 2\n[train]\nbatch_size = 8\n'
                '[search]\nw_cosent = [0.0, 1.0]\nw_ibn = { choices = [0, 1] }\ntau_cosent = [5.0, 50.0]\n')
    path = folder / f"{name}.toml"
    path.write_text(head + body)
    return path


def study_size(n: int, window: float) -> int:
    """Grid cells (TPE n_trials) of a run: a little more than N workers finish in the window."""
    return int(n * window / statistics.mean(TRIAL_S) * 1.3) + 16


# ------------------------------------------------------------------ one worker (forked child)
class Recorder:
    """Durations of storage calls by kind that started inside the measured window, kept in this worker
    and written to a JSON file at the end."""

    def __init__(self, start_at: float, end_at: float) -> None:
        self.start_at, self.end_at = start_at, end_at
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.completed: list[tuple[int, float]] = []  # (trial number, wall time told COMPLETE)

    def add(self, kind: str, began: float, seconds: float) -> None:
        if self.start_at <= began <= self.end_at:
            self.samples[kind].append(seconds)

    def wrap(self, kind: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began, start = time.time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(kind, began, time.perf_counter() - start)
        return timed


STORAGE_CALLS = {"set_trial_intermediate_value": "report", "set_trial_user_attr": "user_attr",
                 "record_heartbeat": "heartbeat", "set_trial_state_values": "set_state",
                 "get_all_trials": "get_all_trials", "_get_trials": "get_all_trials", "get_trial": "get_trial",
                 "create_new_trial": "create_trial", "_create_new_trial": "create_trial",
                 "_get_stale_trial_ids": "stale_check", "set_trial_param": "set_param", "_set_trial_param": "set_param",
                 "get_study_user_attrs": "study_attrs", "get_study_system_attrs": "study_attrs"}


def instrument(handle: Any, service: Any, rec: Recorder) -> None:
    storage = handle.storage
    for name, kind in STORAGE_CALLS.items():
        if hasattr(storage, name):
            setattr(storage, name, rec.wrap(f"db.{kind}", getattr(storage, name)))
    original_lock = handle.lock

    @contextmanager
    def timed_lock(name: str, timeout: float = 600.0) -> Iterator[None]:
        began, start = time.time(), time.perf_counter()
        with original_lock(name, timeout):
            got_at, got = time.time(), time.perf_counter()
            rec.add("lock_wait", began, got - start)
            try:
                yield
            finally:
                rec.add("lock_hold", got_at, time.perf_counter() - got)

    handle.lock = timed_lock
    service._next_trial = rec.wrap("next", service._next_trial)
    original_finish = service._finish

    def finish(study: Any, trial: Any, value: Any, state: Any, failure: Any) -> bool:
        began, start = time.time(), time.perf_counter()
        ok = original_finish(study, trial, value, state, failure)
        rec.add("tell", began, time.perf_counter() - start)
        if ok and state.name == "COMPLETE":
            rec.completed.append((trial.number, time.time()))
        return ok

    service._finish = finish


def worker_main(url: str, study_path: Path, index: int, go: Path, window: float, out: Path) -> int:
    from tuner.service._study_service import StudyService, worker_label
    from tuner.storage import open_storage
    from tuner.study import load_spec

    rec = Recorder(0.0, 0.0)
    code = 1
    try:
        spec = load_spec(study_path)
        handle = open_storage(url, heartbeat_interval=10, grace_period=30)
        service = StudyService(spec, handle)
        service.load()  # connected and the study read: ready
        out.with_suffix(".ready").touch()
        while not go.exists():
            time.sleep(0.05)
        start_at = float(go.read_text() or 0)
        rec.start_at, rec.end_at = start_at, start_at + window
        instrument(handle, service, rec)
        rng = random.Random(index * 7919 + os.getpid())
        time.sleep(max(0.0, start_at - time.time()))

        def objective(trial: Any, choice: Any) -> float:
            label = worker_label()
            static = {"model": choice.model, "loss": choice.loss, "weights": choice.weights, "taus": choice.taus,
                      "pooling": "cls", "train_datasets": choice.train, "eval_datasets": choice.eval,
                      "task": spec.task, "metric": spec.metric, "protocol": spec.protocol, "device": "cpu (synthetic)",
                      "versions": {"tuner": "bench"}, "worker": label}
            for key, value in static.items():
                trial.set_user_attr(key, value)
            total = rng.uniform(*TRIAL_S)
            score = rng.random()
            for step in range(STEPS):
                time.sleep(total / STEPS)
                trial.report(score * (step + 1) / STEPS, step)
                trial.should_prune()
            for split in ("dev", "test"):
                trial.set_user_attr(f"scores.{split}.stsb", score)
            for key, value in (("pooling", "cls"), ("train_pairs_per_s", 100.0), ("wall_s", total),
                               ("peak_mem_mb", 0.0)):
                trial.set_user_attr(key, value)
            return score

        code = service.run_worker(objective, worker_index=index, log=lambda s: None)
    except BaseException as exc:  # noqa: BLE001 - recorded; the parent counts failed workers
        (out.with_suffix(".err")).write_text(f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        out.write_text(json.dumps({"samples": rec.samples, "completed": rec.completed, "code": code}))
    return code


# ------------------------------------------------------------------ the parent: monitor one run
def server_connections(url: str) -> Optional[int]:
    from sqlalchemy import create_engine, text

    from tuner.storage import resolve_url

    engine = create_engine(resolve_url(url), poolclass=__import__("sqlalchemy.pool", fromlist=["NullPool"]).NullPool)
    try:
        with engine.connect() as conn:
            if url.startswith("postgres"):
                return int(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                             "'client backend'")).scalar()) - 1
            return int(conn.execute(text("SHOW STATUS LIKE 'Threads_connected'")).fetchone()[1]) - 1
    except Exception:  # noqa: BLE001 - a sample that failed is left out
        return None
    finally:
        engine.dispose()


def cpu_times() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def memory_of(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB from /proc/PID/smaps_rollup."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = float(parts[1]) / 1024
    except OSError:
        return 0.0, 0.0
    return values.get("Rss:", 0.0), values.get("Pss:", 0.0)


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def backend_url(backend: str, threads: int) -> Iterator[tuple[str, str]]:
    """(URL the workers use, URL of the database behind it)."""
    if backend == "postgresql":
        yield PG_URL, PG_URL
        return
    if backend == "mariadb":
        yield MYSQL_URL, MYSQL_URL
        return
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "storage-proxy", "--storage", PG_URL, "--port", str(port),
                             "--threads", str(threads)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = proc.stdout.readline()
    if "storage proxy for" not in line:
        proc.kill()
        raise SystemExit(f"error: the storage proxy did not start: {proc.stderr.read()[-500:]}")
    try:
        yield f"grpc://127.0.0.1:{port}", PG_URL
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def complete_count(url: str, name: str) -> int:
    """COMPLETE trials of study ``name`` (Optuna's schema, read with SQL: no storage object in the parent)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from tuner.storage import resolve_url

    engine = create_engine(resolve_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM trials t JOIN studies s ON t.study_id = s.study_id "
                                         "WHERE s.study_name = :n AND t.state = 'COMPLETE'"), {"n": name}).scalar())
    except Exception:  # noqa: BLE001
        return 0
    finally:
        engine.dispose()


def run_one(backend: str, sampler: str, n: int, window: float, folder: Path, threads: int,
            until_complete: int = 0, max_window: float = 300.0) -> dict[str, Any]:
    from tuner.service._study_service import StudyService
    from tuner.storage import delete_study, open_storage
    from tuner.study import cell_key, load_spec

    name = f"scale-{backend}-{sampler}-{n}-{uuid.uuid4().hex[:6]}"
    cells = study_size(n, window)
    path = study_file(folder, name, sampler, cells)
    spec = load_spec(path)
    load_before = os.getloadavg()[0]
    with backend_url(backend, threads) as (url, db_url):
        admin = open_storage(db_url, heartbeat_interval=None, grace_period=None)
        try:
            StudyService(spec, admin).prepare()  # queue the grid before the clock starts
        finally:
            admin.close()
        baseline = server_connections(db_url) or 0
        outs = [folder / f"{name}-w{i}.json" for i in range(n)]
        go = folder / f"{name}.go"
        pids = []
        for i in range(n):
            pid = os.fork()
            if pid == 0:  # child: never returns into the parent's code
                os.setpgid(0, 0)
                log = os.open(str(outs[i].with_suffix(".log")), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                code = 1
                try:
                    code = worker_main(url, path, i, go, window, outs[i])
                finally:
                    os._exit(code if isinstance(code, int) else 1)
            pids.append(pid)
        ready_by = time.time() + 600  # every worker connected before the clock starts
        while time.time() < ready_by and sum(p.with_suffix(".ready").exists() for p in outs) < n:
            time.sleep(0.2)
        setup_s = round(time.time() - (ready_by - 600), 1)
        start_at = time.time() + 1.0
        go.with_suffix(".tmp").write_text(str(start_at))
        go.with_suffix(".tmp").rename(go)  # whole, at once
        time.sleep(max(0.0, start_at - time.time()))
        busy0, total0 = cpu_times()
        conns: list[int] = []
        mem: list[tuple[float, float]] = []
        end = start_at + window
        # --until-complete K: keep going past the window until K trials are COMPLETE (a slow machine)
        while time.time() < end or (until_complete and time.time() < start_at + max_window
                                    and complete_count(db_url, name) < until_complete):
            sample = server_connections(db_url)
            if sample is not None:
                conns.append(sample - baseline)
            if not mem and time.time() > start_at + window * 0.6:
                mem = [memory_of(pid) for pid in pids]
            time.sleep(1.0)
        busy1, total1 = cpu_times()
        window = max(window, time.time() - start_at)  # the window really measured
        for pid in pids:
            with_suppress(lambda: os.kill(pid, signal.SIGTERM))
        deadline = time.time() + 90
        codes = {}
        while pids and time.time() < deadline:
            for pid in list(pids):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
                    pids.remove(pid)
            time.sleep(0.1)
        for pid in pids:  # stuck: killed, counted
            with_suppress(lambda: os.kill(pid, signal.SIGKILL))
            os.waitpid(pid, 0)
            codes[pid] = -9
        check = open_storage(db_url, heartbeat_interval=None, grace_period=None)
        try:
            trials = check.storage.get_all_trials(check.storage.get_study_id_from_name(name))
            delete_study(check, name)
        finally:
            check.close()
    results = [json.loads(p.read_text()) if p.exists() else {"samples": {}, "completed": [], "code": None}
               for p in outs]
    errors = [p.with_suffix(".err").read_text() for p in outs if p.with_suffix(".err").exists()]
    for p in outs:
        for q in (p, p.with_suffix(".err"), p.with_suffix(".log"), p.with_suffix(".ready")):
            with_suppress(q.unlink)
    row = summarise(backend, sampler, n, window, start_at, trials, results, errors, codes, conns, mem,
                    (busy1 - busy0) / max(1e-9, total1 - total0), load_before, spec, cell_key)
    row["workers_ready_s"] = setup_s
    return row


def with_suppress(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except (OSError, ProcessLookupError):
        pass


def summarise(backend: str, sampler: str, n: int, window: float, start_at: float, trials: list, results: list,
              errors: list, codes: dict, conns: list, mem: list, cpu_busy: float, load_before: float, spec: Any,
              cell_key: Callable) -> dict[str, Any]:
    samples: dict[str, list[float]] = defaultdict(list)
    told: list[int] = []
    in_window = 0
    for r in results:
        for kind, values in r["samples"].items():
            samples[kind].extend(values)
        for number, at in r["completed"]:
            told.append(number)
            in_window += start_at <= at <= start_at + window
    state = {t.number: t.state.name for t in trials}
    told_twice = sum(c - 1 for c in Counter(told).values() if c > 1)
    grid_dups = 0
    if spec.is_grid:
        per_cell = Counter(cell_key(t.params) for t in trials if t.state.name == "COMPLETE")
        grid_dups = sum(c - 1 for c in per_cell.values() if c > 1)
    lost = sum(1 for number in set(told) if state.get(number) != "COMPLETE")
    left_running = sum(1 for s in state.values() if s == "RUNNING")
    complete = sum(1 for s in state.values() if s == "COMPLETE")
    db_calls = {k: v for k, v in samples.items() if k.startswith("db.")}
    n_calls = sum(len(v) for v in db_calls.values())  # inside the window, as are the trials below
    db_seconds = sum(sum(v) for v in db_calls.values())
    ideal = n / statistics.mean(TRIAL_S)

    def lat(kind: str) -> dict[str, Optional[float]]:
        values = samples.get(kind, [])
        return {"n": len(values), "p50_ms": _ms(percentile(values, 50)), "p99_ms": _ms(percentile(values, 99))}

    return {
        "backend": backend, "sampler": sampler, "workers": n, "window_s": window,
        "trials_per_s": round(in_window / window, 3), "ideal_trials_per_s": round(ideal, 3),
        "efficiency": round(in_window / window / ideal, 3),
        "complete_total": complete, "told_complete": len(told), "study_trials": len(trials),
        "duplicates": told_twice + grid_dups, "lost": lost + left_running,
        "latency": {k: lat(k) for k in ("next", "lock_wait", "lock_hold", "tell", "db.report", "db.user_attr",
                                          "db.heartbeat", "db.set_state", "db.get_all_trials", "db.create_trial")},
        "lock_wait_total_s": round(sum(samples.get("lock_wait", [])), 2),
        "lock_wait_share": round(sum(samples.get("lock_wait", [])) / max(1e-9, n * window), 4),
        "lock_hold_total_s": round(sum(samples.get("lock_hold", [])), 2),
        "lock_busy_share": round(sum(samples.get("lock_hold", [])) / max(1e-9, window), 3),
        "storage_calls_per_trial": round(n_calls / max(1, in_window), 1),
        "storage_s_per_trial": round(db_seconds / max(1, in_window), 4),
        "server_connections_max": max(conns) if conns else None,
        "cpu_busy": round(cpu_busy, 3), "load_before": round(load_before, 2),
        "rss_mb_per_worker": round(statistics.mean(r for r, _ in mem), 1) if mem else None,
        "pss_mb_per_worker": round(statistics.mean(p for _, p in mem), 1) if mem else None,
        "worker_errors": len(errors), "first_error": errors[0] if errors else None,
        "worker_exit_codes": dict(Counter(str(c) for c in codes.values())),
    }


def _ms(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value * 1000, 2)


# ------------------------------------------------------------------ knee and table
def knee(rows: list[dict]) -> dict[str, Any]:
    """Per backend and sampler: the largest N up to which trials/s still grew by at least half of
    the growth in N (efficiency kept), and what was saturated at the next N."""
    out = {}
    for key in sorted({(r["backend"], r["sampler"]) for r in rows}):
        series = sorted((r for r in rows if (r["backend"], r["sampler"]) == key), key=lambda r: r["workers"])
        best = series[0]
        reason = "no saturation up to the largest N run"
        for prev, cur in zip(series, series[1:]):
            growth = cur["trials_per_s"] / max(1e-9, prev["trials_per_s"])
            if growth < 1 + 0.5 * (cur["workers"] / prev["workers"] - 1):
                reason = (f"at N={cur['workers']}: trials/s x{growth:.2f} for x{cur['workers'] / prev['workers']:.0f} "
                          f"workers; CPU busy {cur['cpu_busy']:.0%}, study lock busy {cur['lock_busy_share']:.0%} "
                          f"of the time, p99 lock wait {cur['latency']['lock_wait']['p99_ms']} ms")
                break
            best = cur
        out[f"{key[0]}/{key[1]}"] = {"knee_workers": best["workers"], "trials_per_s_at_knee": best["trials_per_s"],
                                     "why": reason}
    return out


def projection(rows: list[dict], workers: int = 1000, minutes: tuple = (1, 5, 30)) -> list[dict]:
    """The arithmetic for ``workers`` GPU workers with trials of ``minutes``, from the measured per-trial
    storage calls, the study-lock hold per step (per trial in the study: the step scans the study)
    and the connections per worker, of each backend's grid row at its smallest N (the least CPU-starved
    on a small machine)."""
    out = []
    for backend in sorted({r["backend"] for r in rows}):
        grid = [r for r in rows if r["backend"] == backend and r["sampler"] == "grid" and r["told_complete"]]
        if not grid:
            continue
        r = min(grid, key=lambda r: r["workers"])
        hold_ms = r["latency"]["lock_hold"]["p50_ms"] or 0.0
        hold_per_trial_ms = hold_ms / max(1, r.get("study_trials") or study_size(r["workers"], r["window_s"]))
        conns_per_worker = (r["server_connections_max"] or 0) / r["workers"]
        for m in minutes:
            trials_per_s = workers / (m * 60)
            grid_trials = workers * 3  # a grid at least 3 cells per worker (one study of 1,000 GPUs)
            hold = hold_per_trial_ms * grid_trials
            out.append({
                "backend": backend, "from_row_workers": r["workers"], "workers": workers, "trial_minutes": m,
                "trials_per_s": round(trials_per_s, 2),
                "storage_calls_per_s": round(trials_per_s * r["storage_calls_per_trial"], 1),
                "heartbeats_per_s": round(workers / 10, 1),  # --heartbeat-interval 10 (the default)
                "lock_hold_ms_per_step": round(hold, 1), "study_trials": grid_trials,
                "lock_busy_share": round(trials_per_s * hold / 1000, 3),
                "server_connections": round(conns_per_worker * workers) if backend != "proxy" else r["server_connections_max"],
            })
    return out


def markdown(payload: dict) -> str:
    lines = [f"# Storage scale ({payload['machine']})", "",
             f"Written by `{payload['command']}` on {payload['date']}. Synthetic trials of "
             f"{TRIAL_S[0]}-{TRIAL_S[1]} s, {payload['window_s']} s window per row. Latencies in ms (p50 / p99).", "",
             "| backend | sampler | N | trials/s | ideal | eff. | next (lock+scan+pop/ask) | lock wait | lock busy | tell "
             "| report | user attr | calls/trial | storage s/trial | conns | CPU | RSS / PSS MB | dup | lost |",
             "|---|---|---:|---:|---:|---:|---|---|---:|---|---|---|---:|---:|---:|---:|---|---:|---:|"]

    def pair(lat: dict) -> str:
        return f"{lat['p50_ms']} / {lat['p99_ms']}" if lat["n"] else "-"

    for r in payload["rows"]:
        L = r["latency"]
        lines.append(
            f"| {r['backend']} | {r['sampler']} | {r['workers']} | {r['trials_per_s']} | {r['ideal_trials_per_s']} | "
            f"{r['efficiency']:.0%} | {pair(L['next'])} | {pair(L['lock_wait'])} | {r['lock_busy_share']:.0%} | "
            f"{pair(L['tell'])} | {pair(L['db.report'])} | {pair(L['db.user_attr'])} | {r['storage_calls_per_trial']} | "
            f"{r['storage_s_per_trial']} | {r['server_connections_max']} | {r['cpu_busy']:.0%} | "
            f"{r['rss_mb_per_worker']} / {r['pss_mb_per_worker']} | {r['duplicates']} | {r['lost']} |")
    lines += ["", "## Knee per backend", ""]
    for key, k in payload["knee"].items():
        lines.append(f"- **{key}**: up to N={k['knee_workers']} ({k['trials_per_s_at_knee']} trials/s); {k['why']}")
    if payload.get("projection"):
        lines += ["", "## Projection: 1,000 workers (arithmetic from the rows above)", "",
                  "Lock hold per step is taken to grow linearly with the trials in the study, with the study taken as "
                  "3 trials per worker: an upper bound since grids queue only 8 cells ahead (a step reads the running "
                  "and queued trials from the database, but still walks the finished ones cached in memory). "
                  "Connections: measured per worker x 1,000 (direct), or the proxy's own.", "",
                  "| backend | from N | trial min | trials/s | storage calls/s | heartbeats/s | lock hold ms/step | "
                  "lock busy | server connections |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in payload["projection"]:
            lines.append(f"| {p['backend']} | {p['from_row_workers']} | {p['trial_minutes']} | {p['trials_per_s']} | "
                         f"{p['storage_calls_per_s']} | {p['heartbeats_per_s']} | {p['lock_hold_ms_per_step']} | {p['lock_busy_share']:.0%} | "
                         f"{p['server_connections']} |")
    if payload.get("stopped"):
        lines += ["", f"Stopped early: {payload['stopped']}"]
    return "\n".join(lines) + "\n"


def write_results(out: Path, rows: list[dict], args: argparse.Namespace, argv: Optional[list[str]],
                  stopped: Optional[str]) -> dict:
    payload = {"machine": f"{os.cpu_count()} CPUs, {round(mem_available_mb() / 1024)} GiB available at the end",
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": "python bench/storage_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "window_s": args.window, "trial_s": TRIAL_S, "steps": STEPS, "rows": rows, "knee": knee(rows),
               "projection": projection(rows), "stopped": stopped}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(jsonsafe.dumps(payload, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(payload))
    return payload


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="postgresql,mariadb,proxy")
    ap.add_argument("--workers", default="8,32,64,128")
    ap.add_argument("--samplers", default="grid,tpe")
    ap.add_argument("--tpe-workers", default=None, help="N values for the TPE rows (default: --workers)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of measured work per row")
    ap.add_argument("--proxy-threads", type=int, default=32)
    ap.add_argument("--until-complete", type=int, default=0, metavar="K",
                    help="extend a row's window (up to 300 s) until K trials are COMPLETE; latencies stay those "
                         "of the first --window seconds")
    ap.add_argument("--max-memory-share", type=float, default=0.5,
                    help="skip an N whose workers would need more than this share of MemAvailable")
    ap.add_argument("--render", default=None, metavar="JSON",
                    help="only rewrite the markdown (and knee/projection) of an earlier run's JSON")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "storage_scale"),
                    help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    if args.render:
        payload = json.loads(Path(args.render).read_text())
        payload["knee"], payload["projection"] = knee(payload["rows"]), projection(payload["rows"])
        Path(args.render).write_text(jsonsafe.dumps(payload, indent=1) + "\n")
        Path(args.render).with_suffix(".md").write_text(markdown(payload))
        print(markdown(payload))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in ("postgresql", "mariadb", "proxy")]
    try:
        ns = sorted(int(x) for x in args.workers.split(","))
    except ValueError:
        ns = []
    if bad or not ns or min(ns) < 1 or args.window <= 0:
        print(f"error: --backends takes postgresql,mariadb,proxy (got {args.backends}); --workers a list of "
              f"positive numbers (got {args.workers}); --window > 0", file=sys.stderr)
        return 2
    import optuna  # noqa: F401 - imported once, before the forks

    import tuner.service._study_service  # noqa: F401
    import tuner.study  # noqa: F401

    rows: list[dict] = []
    stopped = None
    per_worker_mb = WORKER_MB_GUESS
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            need = n * per_worker_mb
            if need > args.max_memory_share * mem_available_mb():
                stopped = (f"N={n} would need ~{need:.0f} MiB ({per_worker_mb:.0f} MiB/worker measured) and the machine "
                           f"has {mem_available_mb():.0f} MiB available, shared with other programs")
                print(stopped, file=sys.stderr)
                break
            for backend in backends:
                for sampler in [s.strip() for s in args.samplers.split(",") if s.strip()]:
                    if sampler == "tpe" and args.tpe_workers and str(n) not in args.tpe_workers.split(","):
                        continue
                    row = run_one(backend, sampler, n, args.window, Path(tmp), args.proxy_threads, args.until_complete)
                    rows.append(row)
                    if row["pss_mb_per_worker"]:  # the forked workers' real cost (shared pages counted once)
                        measured = [r["pss_mb_per_worker"] for r in rows if r["pss_mb_per_worker"]]
                        per_worker_mb = max(measured) * 1.3
                    write_results(Path(args.out), rows, args, argv, None)  # kept if the run is cut short
                    print(json.dumps({k: row[k] for k in ("backend", "sampler", "workers", "trials_per_s",
                                                          "efficiency", "duplicates", "lost", "cpu_busy",
                                                          "lock_busy_share", "server_connections_max",
                                                          "worker_errors")}), flush=True)
    payload = write_results(Path(args.out), rows, args, argv, stopped)
    print(markdown(payload))
    return 0 if all(r["duplicates"] == 0 and r["lost"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
