"""Where a study stands, computed from its trials: each grid cell's state and the study's progress.

- :class:`CellState`: the trial numbers of one grid cell by state; *done* when one is COMPLETE
  or PRUNED, *busy* when one is RUNNING or WAITING.
- :class:`Progress`: counts for the whole study, the grid cells out of retries, duplicates.
- A FAIL trial counts against ``max_retries`` unless it was interrupted (Ctrl-C), failed as a
  duplicate queue entry, or came before ``--retry-failed`` (the study's ``retries_reset_after``).

Used by :class:`tuner.service._study_service.StudyService` (and through it by :mod:`tuner.service._status`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from tuner.study import StudySpec, cell_key

INTERRUPTED = "interrupted"
DUPLICATE = "duplicate"  # a queued copy of a cell that already ran (possible after a lost lock); never run
RESET_ATTR = "retries_reset_after"  # study user attr: failures up to this trial number no longer count


def _trial_state() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.trial.TrialState


@dataclass
class CellState:
    params: dict
    complete: list[int] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # counted against max_retries
    interrupted: list[int] = field(default_factory=list)  # Ctrl-C, or failures before --retry-failed

    @property
    def done(self) -> bool:
        return bool(self.complete or self.pruned)

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)


@dataclass
class Progress:
    """Where a study stands (computed from its trials)."""

    target: int
    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0
    exhausted: list[dict] = field(default_factory=list)  # grid cells out of retries
    duplicates: int = 0  # grid cells with more than one COMPLETE trial (must stay 0)

    @property
    def finished(self) -> bool:
        """Nothing left to run: every cell/trial done or given up, nothing running or queued."""
        return self.running == 0 and self.waiting == 0 and (self.complete + self.pruned + len(self.exhausted) >= self.target)


def counts_against_retries(t: Any, reset_after: int) -> bool:
    """Does this FAIL trial count against the retry budget?"""
    failure = str(t.user_attrs.get("failure", ""))
    return not failure.startswith((INTERRUPTED, DUPLICATE)) and t.number > reset_after


def cell_key_of(t: Any, names: list[str]) -> Optional[str]:
    """The grid cell a trial runs (its params, or the params it was queued with); None if it has none."""
    params = dict(t.params) if t.params else dict(t.system_attrs.get("fixed_params", {}))
    if not params or any(n not in params for n in names):
        return None
    return cell_key({n: params[n] for n in names})


def cell_states(spec: StudySpec, trials: list, counts: Callable[[Any], bool]) -> dict[str, CellState]:
    """Every grid cell of ``spec`` with its trials by state; ``counts(t)``: does FAIL trial ``t``
    count against the retry budget."""
    TS = _trial_state()
    states = {cell_key(c): CellState(c) for c in spec.cells()}
    names = list(spec.cells()[0]) if states else []
    for t in trials:
        key = cell_key_of(t, names)
        state = states.get(key) if key is not None else None
        if state is None:
            continue
        if t.state == TS.COMPLETE:
            state.complete.append(t.number)
        elif t.state == TS.PRUNED:
            state.pruned.append(t.number)
        elif t.state == TS.RUNNING:
            state.running.append(t.number)
        elif t.state == TS.WAITING:
            state.waiting.append(t.number)
        elif t.state == TS.FAIL:
            (state.failed if counts(t) else state.interrupted).append(t.number)
    return states


def progress(spec: StudySpec, trials: list, counts: Callable[[Any], bool]) -> Progress:
    """The study's :class:`Progress` (by grid cell for grid studies, by trial otherwise)."""
    TS = _trial_state()
    p = Progress(target=spec.target_trials)
    if spec.is_grid:
        for state in cell_states(spec, trials, counts).values():
            if state.complete:
                p.complete += 1
                p.duplicates += len(state.complete) - 1
            elif state.pruned:
                p.pruned += 1
            elif not state.busy and len(state.failed) > spec.max_retries:
                p.exhausted.append(state.params)
            p.running += len(state.running)
            p.waiting += len(state.waiting)
            p.failed += len(state.failed)
        return p
    for t in trials:
        if t.state == TS.COMPLETE:
            p.complete += 1
        elif t.state == TS.PRUNED:
            p.pruned += 1
        elif t.state == TS.RUNNING:
            p.running += 1
        elif t.state == TS.WAITING:
            p.waiting += 1
        elif t.state == TS.FAIL and counts(t):
            p.failed += 1
    return p


def describe_exhausted(exhausted: list[dict], retries: int) -> str:
    """One line on what gave up (grid cells out of retries, or too many failed trials)."""
    if exhausted and "failed_trials" in exhausted[0]:
        return f"{exhausted[0]['failed_trials']} trials failed; see python -m tuner status"
    shown = "; ".join(json.dumps(c, sort_keys=True) for c in exhausted[:3])
    more = f" and {len(exhausted) - 3} more" if len(exhausted) > 3 else ""
    return f"{len(exhausted)} cell(s) failed {retries + 1} times: {shown}{more}; see python -m tuner status"
