"""Warm starts: the best configurations of one study as the first trials of another.

``python -m tuner optimize --study NEW --warm-start OLD [--warm-start-k K]`` (or the study file's
``warm_start = { study = "OLD", k = 5 }``) enqueues the best ``k`` COMPLETE trials of study
``OLD`` in the same storage -- another model, dataset or budget -- as trials of ``NEW``:

* only parameters that exist in NEW's search space and lie inside its distributions are carried
  over (the rest are drawn by NEW's sampler as usual); one log line says what was dropped;
* each enqueued trial carries the user attr ``warm_start_of = "OLD#<trial number>"``, so running
  the same command again enqueues nothing (once per source study);
* at most as many as NEW has trials left; grid studies refuse (they run every cell anyway).

No torch; optuna is imported lazily.
"""
from __future__ import annotations

import json
import warnings
from typing import Any, Callable, Optional

from tuner.errors import TunerError
from tuner.losses.registry import LOSSES, use_param

MARK = "warm_start_of"
DEFAULT_K = 5


def space_distributions(spec: Any) -> dict[str, Any]:
    """Every parameter a trial of ``spec`` (a tpe/random study) can draw -> its Optuna distribution."""
    from optuna.distributions import CategoricalDistribution


    out: dict[str, Any] = {}
    if len(spec.models) > 1:
        out["model"] = CategoricalDistribution(list(spec.models))
    losses = spec.search.losses
    if losses.mode == "any":
        out.update({use_param(n): CategoricalDistribution([True, False]) for n in LOSSES})
    elif losses.mode == "list":
        out["losses"] = CategoricalDistribution(list(losses.combos))
    out.update({name: p.distribution() for name, p in spec.search.params.items() if p.kind != "fixed"})
    return out


_MISSING = object()


def _fit(dist: Any, value: Any) -> Any:
    """``value`` as ``dist`` takes it (a categorical's own choice: 1 matches 1.0, never True), or _MISSING."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    try:
        if isinstance(dist, CategoricalDistribution):
            for c in dist.choices:
                same_kind = (number(c) and number(value)) or type(c) is type(value)
                if same_kind and c == value:
                    return c
            return _MISSING
        if not number(value) or (isinstance(dist, IntDistribution) and float(value) != int(value)):
            return _MISSING
        value = int(value) if isinstance(dist, IntDistribution) else float(value)
        return value if dist._contains(dist.to_internal_repr(value)) else _MISSING
    except (ValueError, TypeError):
        return _MISSING


def carry_over(params: dict[str, Any], dists: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the params NEW can take, {dropped name: why})."""
    kept: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for name, value in params.items():
        fitted = _fit(dists[name], value) if name in dists else _MISSING
        if name not in dists:
            dropped[name] = "not in this search space"
        elif fitted is _MISSING:
            dropped[name] = "outside this study's range"
        else:
            kept[name] = fitted
    return kept, dropped


def check_source(storage: Any, source: str, target: str, masked: str) -> int:
    """The id of study ``source`` in ``storage``; one-line TunerError when it is missing or ``target``."""
    if source == target:
        raise TunerError(f"--warm-start {source}: that is the study being run; name another study in {masked}")
    try:
        return storage.get_study_id_from_name(source)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies() if s.study_name != target)
        raise TunerError(f"--warm-start: no study '{source}' in {masked} (it has: {', '.join(names) or 'none'}); "
                         "name a study of the same storage") from None


def best_trials(storage: Any, study_id: int, k: int) -> list:
    """The ``k`` best COMPLETE trials (highest value first; the studies here maximise)."""
    import optuna

    complete = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    complete = [t for t in complete if t.value is not None]
    return sorted(complete, key=lambda t: (-t.value, t.number))[:k]


def warm_start(service: Any, study: Any, source: str, k: int = DEFAULT_K,
               log: Callable[[str], None] = lambda s: None) -> int:
    """Enqueue the best ``k`` complete trials of ``source`` into ``study`` (served by ``service``,
    a :class:`tuner.service._study_service.StudyService`) once; returns how many were enqueued now."""

    spec = service.spec
    if spec.is_grid:
        raise TunerError(f"study '{service.name}' is a grid: it runs every cell anyway, so --warm-start does not "
                         "apply; remove it (warm starts are for tpe/random studies)")
    if k < 1:
        raise TunerError(f"--warm-start-k {k}: use 1 or more")
    storage = service.handle.storage
    source_id = check_source(storage, source, service.name, service.handle.masked)
    best = best_trials(storage, source_id, k)
    if not best:
        raise TunerError(f"--warm-start: study '{source}' has no complete trial yet; let it finish some trials first")
    dists = space_distributions(spec)
    with service.lock():
        trials = study.get_trials(deepcopy=False)
        done_before = [t for t in trials if str(t.user_attrs.get(MARK, "")).startswith(f"{source}#")]
        if done_before:
            log(f"warm start from '{source}': already done ({len(done_before)} trial(s) marked {MARK}); "
                "nothing enqueued again")
            return 0
        progress = service.progress(trials)
        slots = progress.target - (progress.complete + progress.pruned + progress.running + progress.waiting)
        if slots <= 0:
            log(f"warm start from '{source}': the study has no trials left to run; nothing enqueued")
            return 0
        seen: set[str] = set()
        queue: list[tuple[Any, dict]] = []
        dropped: dict[str, set] = {}
        for t in best:
            kept, why = carry_over(t.params, dists)
            for name, reason in why.items():
                dropped.setdefault(f"{name} ({reason})", set()).add(t.number)
            key = json.dumps(kept, sort_keys=True, default=str)
            if kept and key not in seen:
                seen.add(key)
                queue.append((t, kept))
        queue = queue[:slots]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t, kept in queue:
                study.enqueue_trial(kept, user_attrs={MARK: f"{source}#{t.number}", "warm_start_value": t.value},
                                    skip_if_exists=False)
    values = ", ".join(f"{t.value:.4f}" for t, _ in queue)
    what = "; dropped: " + ", ".join(f"{d} in {len(n)} trial(s)" for d, n in sorted(dropped.items())) \
        if dropped else "; every parameter carried over"
    skipped = len(best) - len(queue)
    more = f"; {skipped} left out (duplicates after dropping, or no trials left)" if skipped else ""
    log(f"warm start from '{source}': enqueued {len(queue)} of its best {len(best)} complete trial(s) "
        f"(values {values or 'none'}){what}{more}")
    return len(queue)


def resolve(spec: Any, flag_study: Optional[str], flag_k: Optional[int]) -> Optional[tuple[str, int]]:
    """(source study, k) from ``--warm-start``/``--warm-start-k`` over the study file's key; None for none."""
    file_ws = getattr(spec, "warm_start", None)
    source = flag_study or (file_ws.study if file_ws is not None else None)
    if source is None:
        if flag_k is not None:
            raise TunerError("--warm-start-k needs --warm-start STUDY (or warm_start in the study file)")
        return None
    if spec.is_grid:
        raise TunerError(f"--warm-start {source}: study '{spec.name}' is a grid: it runs every cell anyway, so a "
                         "warm start does not apply; remove --warm-start")
    k = flag_k if flag_k is not None else (file_ws.k if file_ws is not None else DEFAULT_K)
    if int(k) < 1:
        raise TunerError(f"--warm-start-k {k}: use 1 or more")
    return source, int(k)
