"""How far a study is and how long it will take: computed from its trials, nothing drawn.

:func:`summarize` turns a study's trials (``optuna.trial.FrozenTrial``, or anything with the same
``state``/``value``/``datetime_start``/``datetime_complete``/``intermediate_values`` fields) into a
:class:`Snapshot`: trials done / total, the best value so far, elapsed time, the mean duration of
the finished trials, an ETA from those durations and the number of workers, and for each running
trial its age, its last reported step and that step's dev score (the intermediate values the
objective reports every ``eval_every`` steps), and its training step k of N (the trial attr
``train_progress`` the objective writes every few seconds). ``optimize``'s live line and ``status``
show the same snapshot; :mod:`tuner.service._progress_view` renders it. No torch, no optuna import,
no storage.

ETA: ``remaining = target - done`` trials, each taking the finished trials' mean duration; a
running trial only needs what is left of the mean (at least 5% of it: it is not done yet), and
``workers`` trials run at a time::

    work_left = sum(max(mean - age, 0.05 * mean) for running) + (remaining - running) * mean
    eta = work_left / workers

A running trial's step rate says more than the others' durations: a trial that is k of N steps
in after ``age`` seconds is projected to take ``age * N / k`` in all (the fraction counts its seeds
too). Before any trial has finished, every running trial is projected so, and the mean of the
projections replaces the mean duration: a full-budget trial can last an hour, and this gives an ETA
after its first steps instead of after the first trial. Once trials have finished, a running trial
is projected by its own rate when it is at least ``TRUST_FRACTION`` through (its first steps also
pay for loading the model and data), and those projections join the finished durations in the mean
for the trials still queued: cells of one study can differ several-fold (a confirm study's recipe
cells run twice the steps of its searched configurations, with longer padded batches).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

from objectives.common import TRAIN_PROGRESS

FINISHED = ("COMPLETE", "PRUNED")   # states whose duration says how long a trial takes
MIN_LEFT = 0.05                     # a running trial older than the mean still needs this share of it
TRUST_FRACTION = 0.1                # once trials have finished, a running trial this far in is projected by its own rate


def _state(t: Any) -> str:
    state = t.state
    return getattr(state, "name", str(state))


def trial_seconds(t: Any) -> Optional[float]:
    """Wall seconds of a finished trial (``datetime_complete - datetime_start``), else None."""
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return max(0.0, (t.datetime_complete - t.datetime_start).total_seconds())


@dataclass
class RunningTrial:
    number: int
    age_s: Optional[float]
    step: Optional[int] = None      # the last step with a dev score (intermediate value)
    dev: Optional[float] = None     # that score
    worker: Optional[str] = None
    train_step: Optional[int] = None    # training step k of ...
    train_steps: Optional[int] = None   # ... N, of run ``run`` of ``runs`` (seeds)
    run: int = 1
    runs: int = 1

    @property
    def fraction(self) -> Optional[float]:
        """How much of the trial's training is done (its seeds counted), from ``train_progress``."""
        if not self.train_step or not self.train_steps:
            return None
        return min(1.0, ((self.run - 1) + self.train_step / self.train_steps) / max(1, self.runs))

    @property
    def projected_s(self) -> Optional[float]:
        """The trial's whole duration as its step rate so far projects it; None before its first step."""
        fraction = self.fraction
        return None if fraction is None or self.age_s is None else self.age_s / fraction


@dataclass
class Snapshot:
    """One look at a study; :meth:`to_dict` is what ``status --json`` shows under ``timing``."""

    done: int                       # complete + pruned (grid: cells)
    target: int
    running: int = 0
    best: Optional[float] = None
    best_trial: Optional[int] = None
    elapsed_s: float = 0.0
    mean_trial_s: Optional[float] = None
    eta_s: Optional[float] = None   # None until a trial has finished (or when nothing is left: 0)
    workers: int = 1
    in_flight: list[RunningTrial] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("elapsed_s", "mean_trial_s", "eta_s"):
            if out[key] is not None:
                out[key] = round(out[key], 1)
        return out


def estimate_eta(durations: Iterable[float], remaining: int, running_ages: Iterable[Optional[float]],
                 workers: int, projected: Iterable[Optional[float]] = ()) -> Optional[float]:
    """Seconds until ``remaining`` trials are done (see the module doc); None without durations.

    ``projected``: each running trial's projected duration from its step rate (None where unknown
    or not trusted yet), in the order of ``running_ages``. A running trial with a projection needs
    what is left of it; the others, and the trials still queued, the mean of the finished
    durations and the projections."""
    if remaining <= 0:
        return 0.0
    ages = [a for a in running_ages][:remaining]
    projections = (list(projected) + [None] * len(ages))[:len(ages)]
    evidence = [d for d in durations if d is not None] + [p for p in projections if p is not None]
    if not evidence:
        return None
    mean = sum(evidence) / len(evidence)
    expected = [p if p is not None else mean for p in projections]
    left = sum(max(e - (a or 0.0), MIN_LEFT * e) for a, e in zip(ages, expected)) + (remaining - len(ages)) * mean
    return left / max(1, int(workers))


def train_progress_of(value: Any) -> dict[str, int]:
    """The ``train_progress`` attr (``{"step", "steps", "run", "runs"}``) as RunningTrial fields."""
    if not isinstance(value, dict):
        return {}
    try:
        out = {"train_step": int(value["step"]), "train_steps": int(value["steps"]),
               "run": int(value.get("run", 1)), "runs": int(value.get("runs", 1))}
    except (KeyError, TypeError, ValueError):
        return {}
    return out if out["train_steps"] > 0 else {}


def _projection(r: RunningTrial, trusted_only: bool) -> Optional[float]:
    """``r.projected_s``; with ``trusted_only``, None until the trial is ``TRUST_FRACTION`` through."""
    if trusted_only and (r.fraction or 0.0) < TRUST_FRACTION:
        return None
    return r.projected_s


def _last_report(t: Any) -> tuple[Optional[int], Optional[float]]:
    values = getattr(t, "intermediate_values", None) or {}
    if not values:
        return None, None
    step = max(values)
    return int(step), float(values[step])


def summarize(trials: Iterable[Any], target: int, *, done: Optional[int] = None, workers: Optional[int] = None,
              now: Optional[dt.datetime] = None, started: Optional[dt.datetime] = None) -> Snapshot:
    """The :class:`Snapshot` of a study with these trials.

    ``target``: trials (or grid cells) in all. ``done``: how many of them are finished (default:
    the COMPLETE + PRUNED trials; a grid passes its finished cells). ``workers``: trials running
    at a time (default: the distinct workers of the running trials, at least 1). ``now``: the
    clock (naive local time, as Optuna stores it). ``started``: where ``elapsed`` counts from
    (default: the first trial's start)."""
    now = now or dt.datetime.now()
    trials = list(trials)
    best_value, best_trial = None, None
    durations: list[float] = []
    running: list[RunningTrial] = []
    first = None
    for t in trials:
        state = _state(t)
        if t.datetime_start is not None and (first is None or t.datetime_start < first):
            first = t.datetime_start
        if state in FINISHED:
            seconds = trial_seconds(t)
            if seconds is not None:
                durations.append(seconds)
        if state == "COMPLETE" and t.value is not None and (best_value is None or t.value > best_value):
            best_value, best_trial = float(t.value), t.number
        elif state == "RUNNING":
            age = (now - t.datetime_start).total_seconds() if t.datetime_start else None
            step, dev = _last_report(t)
            attrs = getattr(t, "user_attrs", None) or {}
            running.append(RunningTrial(t.number, None if age is None else max(0.0, age), step, dev,
                                        attrs.get("worker"), **train_progress_of(attrs.get(TRAIN_PROGRESS))))
    if done is None:
        done = sum(1 for t in trials if _state(t) in FINISHED)
    if workers is None:
        workers = max(1, len({r.worker or r.number for r in running}))
    start = started or first
    elapsed = max(0.0, (now - start).total_seconds()) if start is not None else 0.0
    remaining = max(0, int(target) - int(done))
    running.sort(key=lambda r: r.number)
    return Snapshot(done=int(done), target=int(target), running=len(running), best=best_value, best_trial=best_trial,
                    elapsed_s=elapsed, mean_trial_s=sum(durations) / len(durations) if durations else None,
                    eta_s=estimate_eta(durations, remaining, [r.age_s for r in running], workers,
                                       [_projection(r, trusted_only=bool(durations)) for r in running]),
                    workers=int(workers), in_flight=running)
