"""The study service: create/load a study, queue grid cells, run trials in a worker loop.

Exactly once for grid studies
-----------------------------
Optuna's ``GridSampler`` can hand the same cell to two workers, so grid studies do not use it.
Instead every step that decides what runs next happens under one study-wide lock
(:func:`tuner.storage._locks.named_lock`: ``pg_advisory_lock`` / MySQL ``GET_LOCK`` / ``flock`` beside the
SQLite file / for ``grpc://``, a lease that ``tuner storage-proxy`` holds on the database's lock,
:mod:`tuner.storage._proxy`), held only for milliseconds:

1. fail stale trials (a worker stopped heartbeating for longer than the grace period: killed,
   machine gone) with a ``failure`` reason;
2. scan the study's trials: a cell is *done* when a trial with its params is COMPLETE (or PRUNED:
   the pruner or a NaN loss ended it for good), *busy* when one is RUNNING or WAITING;
3. enqueue the next cells that are neither, once, as WAITING trials with the cell's params, up
   to ``GRID_QUEUE_AHEAD`` waiting (re-runs record ``retry_of``; a cell gets at most
   ``1 + max_retries`` failed attempts, interruptions by Ctrl-C not counted);
4. pop one WAITING trial (WAITING -> RUNNING is itself a compare-and-set in optuna's storage)
   and record its first heartbeat.

Because the scan and the pop are serialised, a cell is never queued twice and a queued trial
is never run by two workers, on one machine or many. One exception: a server ends a lock with
the connection that holds it, so a connection lost mid-step can let two workers queue one cell;
step 4 then fails the extra copy as ``failure = "duplicate: ..."`` instead of running it. After a
lost connection a pop whose reply was lost is taken as the worker's own (the trial is RUNNING;
if the lock was lost too and another worker claimed it, both run it and the second ``tell`` is
refused, so it still completes once). Storage calls retry a lost
connection for ``$TUNER_STORAGE_RETRY_S`` seconds (:mod:`tuner.storage._retry`). A worker with nothing to pop waits while
other workers still run cells (one of them may die, and its cell comes back after the grace
period) and stops when every cell is done or out of retries.

TPE/random studies
------------------
The same lock covers ``study.ask()`` and the sampling of every parameter, so a worker sees the
other workers' running trials with their parameters; with ``TPESampler(constant_liar=True)``
those count as bad results and the next suggestion moves elsewhere. A trial whose worker died is
re-queued with its parameters by :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`.
The study stops at ``n_trials`` COMPLETE+PRUNED trials (failed ones are replaced).

Cell states and progress are computed in :mod:`tuner.service._study_progress`; the signal guard and the
heartbeat thread around each trial are in :mod:`tuner.service._trial_runtime`.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import socket
import sys
import time
import warnings
import zlib
from typing import Any, Callable, Optional

from tuner.service import _study_progress as study_progress
from tuner.errors import TunerError
from tuner.storage import StorageHandle
from tuner.storage._retry import StorageUnavailable, last_call_reconnected
from tuner.study import StudySpec
from tuner.study.spec import compat_of
from tuner.service._study_progress import (  # noqa: F401 - these names were defined here; still importable from here
    DUPLICATE, INTERRUPTED, RESET_ATTR, CellState, Progress, cell_key_of, counts_against_retries, describe_exhausted)
from tuner.service._trial_runtime import Heartbeat, SignalGuard

_log = logging.getLogger(__name__)
GRID_QUEUE_AHEAD = 8  # grid cells kept WAITING at a time; more are queued as workers take them


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


ObjectiveFn = Callable[[Any, Any], float]


class StudyService:
    """One study on one storage: create/load, queue, and the worker loop."""

    def __init__(self, spec: StudySpec, handle: StorageHandle, study_name: Optional[str] = None) -> None:
        self.spec = spec
        self.handle = handle
        self.name = study_name or spec.name
        self.poll_s = float(min(max(1, handle.heartbeat_interval or 5), 5))
        self.reset_after = -1

    # ---------------------------------------------------------------- study
    def lock(self) -> Any:
        return self.handle.lock(f"study:{self.name}")

    def create_or_load(self) -> Any:
        """Create the study (recording its spec) or load it, checking it was made from the same file."""
        optuna = _optuna()
        storage = self.handle.storage
        with self.lock():
            try:
                study_id = storage.get_study_id_from_name(self.name)
            except KeyError:
                study_id = None
            if study_id is None:
                study = optuna.create_study(storage=storage, study_name=self.name, direction="maximize",
                                            sampler=self.spec.build_sampler(), pruner=self.spec.pruner.build())
                self._record_spec(study)
                return study
            study = self.load()
            stored = study.user_attrs.get("spec")
            if stored is not None:
                self.check_compatible(stored)
            if stored != _jsonable(self.spec.raw):
                self._record_spec(study)
            return study

    def check_compatible(self, stored: dict) -> None:
        old = compat_of(stored)
        new = _jsonable(self.spec.compat_dict())
        if old != new:
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise TunerError(f"study '{self.name}' in {self.handle.masked} was made from a different version of "
                             f"{self.spec.file_label} (differs in: {', '.join(keys)}); run with --study-name NEW_NAME "
                             "to start a new study, or restore the file to resume")

    def _record_spec(self, study: Any) -> None:
        spec = self.spec
        for key, value in (("spec", _jsonable(spec.raw)), ("task", spec.task), ("metric", spec.metric),
                           ("protocol", spec.protocol), ("sampler", spec.sampler), ("study_file", spec.file_label),
                           ("target_trials", spec.target_trials)):
            study.set_user_attr(key, value)

    def load(self, sampler_seed: Optional[int] = None) -> Any:
        optuna = _optuna()
        try:
            return optuna.load_study(study_name=self.name, storage=self.handle.storage,
                                     sampler=self.spec.build_sampler(sampler_seed), pruner=self.spec.pruner.build())
        except KeyError:
            raise TunerError(f"no study '{self.name}' in {self.handle.masked}; start it with "
                             f"python -m tuner optimize --study {self.spec.name}") from None

    def reset_retries(self, study: Any) -> int:
        """``--retry-failed``: failures so far no longer count against max_retries."""
        with self.lock():
            numbers = [t.number for t in study.get_trials(deepcopy=False)]
            self.reset_after = max(numbers, default=-1)
            study.set_user_attr(RESET_ATTR, self.reset_after)
            return self.reset_after

    def _refresh(self, study: Any) -> None:
        self.reset_after = int(study.user_attrs.get(RESET_ATTR, -1))

    def _counts(self, t: Any) -> bool:
        """Does this FAIL trial count against the retry budget?"""
        return counts_against_retries(t, self.reset_after)

    # ---------------------------------------------------------------- state
    def cell_states(self, trials: list) -> dict[str, CellState]:
        return study_progress.cell_states(self.spec, trials, self._counts)

    def progress(self, trials: list) -> Progress:
        return study_progress.progress(self.spec, trials, self._counts)

    # ---------------------------------------------------------------- steps under the lock
    def fail_stale(self, study: Any) -> list:
        """Fail RUNNING trials whose worker stopped heartbeating; re-queue TPE ones (bounded)."""
        optuna = _optuna()
        storage = self.handle.storage
        if not self.handle.heartbeat_interval:
            return []
        failed = []
        grace = self.handle.grace_period or 2 * self.handle.heartbeat_interval
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            try:
                storage.set_trial_user_attr(trial_id, "failure",
                                            f"worker lost: no heartbeat for over {grace}s (process killed or machine down)")
                if storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                    failed.append(storage.get_trial(trial_id))
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        if failed and not self.spec.is_grid:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.spec.max_retries)
                for frozen in failed:
                    clean = copy.deepcopy(frozen)
                    clean.user_attrs = {"retry_of": frozen.number}
                    retry(study, clean)
        for frozen in failed:
            _log.warning("trial %d: worker %s lost (no heartbeat); marked FAIL", frozen.number,
                         frozen.user_attrs.get("worker", "?"))
        return failed

    def sync_grid(self, study: Any, trials: Optional[list] = None) -> int:
        """Queue the next cells that are not done, running or queued, up to ``GRID_QUEUE_AHEAD`` waiting
        (under the lock). Not the whole grid: each step re-reads every unfinished trial, WAITING too."""
        trials = study.get_trials(deepcopy=False) if trials is None else trials
        states = self.cell_states(trials).values()
        room = GRID_QUEUE_AHEAD - sum(len(state.waiting) for state in states)
        queued = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for state in states:
                if queued >= room:
                    break
                if state.done or state.busy or len(state.failed) > self.spec.max_retries:
                    continue
                previous = max(state.failed + state.interrupted, default=None)
                study.enqueue_trial(state.params, user_attrs={"retry_of": previous} if previous is not None else None,
                                    skip_if_exists=False)
                queued += 1
        return queued

    def prepare(self) -> tuple[Any, Progress]:
        """Create/load the study and (grid) queue its first cells; returns (study, progress)."""
        study = self.create_or_load()
        self._refresh(study)
        with self.lock():
            self.fail_stale(study)
            if self.spec.is_grid:
                self.sync_grid(study)
            return study, self.progress(study.get_trials(deepcopy=False))

    def _pop_waiting(self, study: Any, trials: Optional[list] = None) -> Optional[int]:
        """Claim the oldest WAITING trial (set it RUNNING); call under the lock.

        A queued grid cell that is already done or running elsewhere (queued twice when a lost
        connection released the lock mid-step) is failed as a duplicate instead of being run.
        """
        optuna = _optuna()
        storage = self.handle.storage
        TS = optuna.trial.TrialState
        taken: set = set()
        if self.spec.is_grid and trials is not None:
            names = list(self.spec.cells()[0]) if self.spec.cells() else []
            taken = {cell_key_of(t, names) for t in trials if t.state in (TS.COMPLETE, TS.PRUNED, TS.RUNNING)}
        # The trials just scanned under this lock say which are WAITING (no second read of the whole
        # queue: a pop costs one scan); WAITING -> RUNNING below is a compare-and-set regardless.
        waiting = ([t for t in trials if t.state == TS.WAITING] if trials is not None else
                   storage.get_all_trials(study._study_id, deepcopy=False, states=(TS.WAITING,)))
        for t in sorted(waiting, key=lambda t: t.number):
            try:
                if taken and cell_key_of(t, names) in taken:
                    storage.set_trial_user_attr(t._trial_id, "failure",
                                                f"{DUPLICATE}: this cell was queued twice and is already running or done; not run")
                    storage.set_trial_state_values(t._trial_id, state=TS.FAIL)
                    _log.warning("trial %d: duplicate queue entry of a cell that is already running or done; failed, not run", t.number)
                    continue
                if storage.set_trial_state_values(t._trial_id, state=TS.RUNNING):
                    return t._trial_id
                # A lost connection may have hidden that our own first attempt went through.
                if last_call_reconnected() and storage.get_trial(t._trial_id).state == TS.RUNNING:
                    return t._trial_id
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def _next_trial(self, study: Any) -> tuple[Optional[Any], Optional[Any], Progress]:
        """Under the lock: (trial, choice, progress); trial None when nothing can run now."""
        optuna = _optuna()
        with self.lock():
            self.fail_stale(study)
            self._refresh(study)
            trials = study.get_trials(deepcopy=False)
            if self.spec.is_grid:
                if self.sync_grid(study, trials):
                    trials = study.get_trials(deepcopy=False)
                progress = self.progress(trials)
                trial_id = self._pop_waiting(study, trials)
                if trial_id is None:
                    return None, None, progress
                trial = optuna.trial.Trial(study, trial_id)
            else:
                progress = self.progress(trials)
                if progress.waiting == 0:
                    if progress.complete + progress.pruned + progress.running >= progress.target:
                        return None, None, progress
                    if progress.failed >= max(3, progress.target):
                        progress.exhausted.append({"failed_trials": progress.failed})
                        return None, None, progress
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    trial = study.ask()
            self.handle.storage.record_heartbeat(trial._trial_id)
            try:
                choice = self.spec.suggest(trial)
            except Exception as exc:  # a queued trial that does not fit the spec: fail it, go on
                self._finish(study, trial, None, optuna.trial.TrialState.FAIL, f"bad parameters: {exc}")
                return None, None, progress
            return trial, choice, progress

    def _finish(self, study: Any, trial: Any, value: Optional[float], state: Any, failure: Optional[str]) -> bool:
        optuna = _optuna()
        try:
            if failure is not None:
                trial.set_user_attr("failure", failure[:2000])
            if state == optuna.trial.TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                study.tell(trial, state=state)
            return True
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as exc:
            _log.warning("trial %d was already finished elsewhere (heartbeat lost?); result dropped: %s",
                         trial.number, exc)
            return False

    # ---------------------------------------------------------------- the worker loop
    def run_worker(self, objective: ObjectiveFn, *, worker_index: int = 0, max_trials: Optional[int] = None,
                   log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> int:
        """Run trials until the study is finished. Returns 0 when done, 1 when cells/trials gave up,
        130 when stopped by a signal.

        A worker with nothing to pop waits while other workers' trials run: one may fail (or its
        worker die) and be queued again. A worker that ran no trial says "nothing to do" as it ends."""
        optuna = _optuna()
        TS = optuna.trial.TrialState
        first = self.load()
        seed = (self.spec.seed + 7919 * worker_index + 104729 * len(first.get_trials(deepcopy=False))
                + zlib.crc32(socket.gethostname().encode())) % (2**31)
        study = self.load(sampler_seed=seed)
        label = f"worker {worker_index} ({worker_label()})"
        ran = 0
        with SignalGuard() as guard:
            while True:
                if guard.requested:
                    log(f"{label}: stopping ({guard.requested})")
                    return 130
                if max_trials is not None and ran >= max_trials:
                    return 0
                trial, choice, progress = self._next_trial(study)
                if trial is None:
                    if progress.exhausted and progress.running == 0 and progress.waiting == 0:
                        log(f"{label}: giving up: {describe_exhausted(progress.exhausted, self.spec.max_retries)}")
                        return 1
                    if progress.running == 0 and progress.waiting == 0:
                        if ran == 0:
                            log(f"{label}: nothing to do: every trial of the study is finished")
                        return 0
                    self._sleep(guard)
                    continue
                ran += 1
                state, value, failure = self._run_one(study, trial, choice, objective, guard)
                shown = f"{value:.4f}" if value is not None else (failure or "")
                log(f"{label}: trial {trial.number} {state.name} {shown[:200]}")
                if state == TS.FAIL and failure and failure.startswith(INTERRUPTED):
                    return 130

    def _sleep(self, guard: SignalGuard) -> None:
        deadline = time.monotonic() + self.poll_s
        while time.monotonic() < deadline and not guard.requested:
            time.sleep(0.1)

    def _run_one(self, study: Any, trial: Any, choice: Any, objective: ObjectiveFn,
                 guard: SignalGuard) -> tuple[Any, Optional[float], Optional[str]]:
        optuna = _optuna()
        TS = optuna.trial.TrialState
        beat = Heartbeat(self.handle.storage, trial._trial_id, self.handle.heartbeat_interval).start()
        value: Optional[float] = None
        failure: Optional[str] = None
        state = TS.COMPLETE
        try:
            if guard.requested:
                raise KeyboardInterrupt(guard.requested)
            guard.interruptible = True
            try:
                value = float(objective(trial, choice))
            finally:
                guard.interruptible = False
            if value != value or value in (float("inf"), float("-inf")):
                state, failure = TS.PRUNED, f"objective value is {value} (constant embeddings?)"
                value = None
        except optuna.TrialPruned as exc:
            state = TS.PRUNED
            failure = trial.user_attrs.get("failure") or (f"pruned: {exc}" if str(exc) else "pruned")
        except KeyboardInterrupt as exc:
            state, failure = TS.FAIL, f"{INTERRUPTED}: stopped by {exc or guard.requested or 'Ctrl-C'} during the trial"
            guard.requested = guard.requested or "interrupt"
        except StorageUnavailable:
            raise  # nothing can be recorded: stop the worker; the trial is failed by its missing heartbeat
        except Exception as exc:  # noqa: BLE001 - the worker goes on with the next trial
            state = TS.FAIL
            if guard.requested:  # the signal surfaced as another error (e.g. raised inside a lazy import)
                failure = f"{INTERRUPTED}: stopped by {guard.requested} during the trial"
                _log.info("trial %d: %s while stopping", trial.number, type(exc).__name__)
            else:
                failure = trial.user_attrs.get("failure") or f"{type(exc).__name__}: {str(exc).strip()}"
                _log.warning("trial %d failed", trial.number, exc_info=True)
        finally:
            beat.stop()
        already_set = failure is not None and trial.user_attrs.get("failure") == failure
        self._finish(study, trial, value, state, None if already_set else failure)
        return state, value, failure


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
