"""Statistics for reporting scores: spread over seeds and paired bootstrap tests over test items.

Pure numpy/scipy (no torch), so exporters and scripts can use it cheaply.

* :func:`seed_summary` -- mean, sample std and a two-sided 95% Student-t interval of one cell's
  scores over repeated runs (seeds).
* :func:`paired_bootstrap` -- the difference of a statistic between two systems scored on the
  *same* test items, its percentile 95% interval and a one-sided p-value-like share, resampling
  the same items for both systems in every replicate. For STS the statistic is the Spearman
  correlation of each system's similarities with the gold scores over the resampled pairs; for
  classification it is accuracy (pass per-item 0/1 correctness, or predictions and labels).
* :func:`not_significantly_below` -- whether a system is not significantly below the best one.
* :func:`holm` -- Holm's step-down adjustment of a family of p-values (many comparisons at once).

All results are plain floats/ints/bools/lists (JSON-safe; a undefined value is None, never NaN).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

#: Default number of bootstrap replicates and significance level.
N_BOOTSTRAP = 2000
ALPHA = 0.05


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if value is not None and math.isfinite(value) else None


def seed_summary(scores: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and ``confidence`` t-interval of ``scores`` (one per seed).

    Non-finite scores (failed runs) are left out and counted in ``dropped``. With fewer than two
    scores, std and the interval are None (no spread can be estimated from one run).
    """
    from scipy import stats

    arr = np.asarray([s for s in scores if s is not None], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n = int(len(finite))
    out: dict[str, Any] = {"n": n, "dropped": int(len(scores) - n), "mean": None, "std": None,
                           "ci_low": None, "ci_high": None, "half_width": None, "confidence": confidence}
    if n == 0:
        return out
    mean = float(finite.mean())
    out["mean"] = mean
    if n < 2:
        return out
    std = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n))
    out.update(std=std, ci_low=mean - half, ci_high=mean + half, half_width=half)
    return out


def _spearman_columns(a: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` [B, n] with the matching row of ``gold`` [B, n]."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    rg = rankdata(gold, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rg -= rg.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(axis=1) * (rg * rg).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rg).sum(axis=1) / denom, np.nan)


def _statistic(metric: str, values: np.ndarray, gold: Optional[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """The metric of ``values`` over each row of resampled indices ``idx`` [B, n] -> [B]."""
    if metric == "spearman":
        return _spearman_columns(values[idx], gold[idx])
    return values[idx].mean(axis=1)  # accuracy: mean of per-item correctness


def _prepare(metric: str, a: Any, b: Any, gold: Any) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"both systems need one score per test item (same length); got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("the bootstrap needs at least 2 test items")
    if metric == "spearman":
        if gold is None:
            raise ValueError("metric 'spearman' needs the gold scores")
        g = np.asarray(gold, dtype=np.float64)
        if g.shape != a.shape:
            raise ValueError(f"gold has {g.shape}, the systems {a.shape}")
        return a, b, g
    if metric == "accuracy":
        if gold is not None:  # predictions + labels -> per-item correctness
            g = np.asarray(gold)
            if g.shape != a.shape:
                raise ValueError(f"labels have {g.shape}, the predictions {a.shape}")
            return (a == g).astype(np.float64), (b == g).astype(np.float64), None
        if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
            raise ValueError("accuracy without labels needs per-item correctness (0/1) for both systems")
        return a, b, None
    raise ValueError(f"unknown metric '{metric}'; use spearman or accuracy")


def paired_bootstrap(system_a: Sequence[float], system_b: Sequence[float], gold: Optional[Sequence[float]] = None,
                     *, metric: str = "spearman", n_resamples: int = N_BOOTSTRAP, seed: int = 0,
                     confidence: float = 0.95, batch: int = 250) -> dict[str, Any]:
    """Paired bootstrap of ``metric(A) - metric(B)`` over the same test items.

    ``system_a`` / ``system_b``: per item, the predicted similarity (``metric="spearman"``, with
    ``gold`` the gold scores) or, for ``metric="accuracy"``, the 0/1 correctness of each item
    (or the predicted labels, with ``gold`` the true labels). Every replicate draws n items with
    replacement and computes the metric of both systems on *those same* items.

    Returns ``{"metric", "n", "a", "b", "difference", "ci_low", "ci_high", "p_a_not_better",
    "p_two_sided", "n_resamples", "seed"}``: ``difference`` is the observed metric(A) - metric(B)
    on all items; the interval is the percentile interval of the replicates' differences;
    ``p_a_not_better`` is the share of replicates where A does not beat B (difference <= 0): a
    one-sided p-value-like figure for "A is better"; ``p_two_sided`` = 2 x the smaller tail
    share, capped at 1. Identical systems give difference 0, interval [0, 0] and p 1.
    Replicates whose statistic is undefined (all-equal resampled gold) are dropped and counted.
    """
    a, b, g = _prepare(metric, system_a, system_b, gold)
    n = len(a)
    idx_all = np.arange(n)[None, :]
    stat_a = float(_statistic(metric, a, g, idx_all)[0])
    stat_b = float(_statistic(metric, b, g, idx_all)[0])
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_resamples, batch):
        idx = rng.integers(0, n, size=(min(batch, n_resamples - start), n))
        diffs.append(_statistic(metric, a, g, idx) - _statistic(metric, b, g, idx))
    d = np.concatenate(diffs)
    valid = d[np.isfinite(d)]
    tail = (1.0 - confidence) / 2
    if len(valid):
        lo, hi = np.quantile(valid, [tail, 1.0 - tail])
        p_not_better = float(np.mean(valid <= 0))
        p_not_worse = float(np.mean(valid >= 0))
        p_two = min(1.0, 2.0 * min(p_not_better, p_not_worse))
    else:
        lo = hi = float("nan")
        p_not_better = p_two = float("nan")
    return {"metric": metric, "n": int(n), "a": _finite_or_none(stat_a), "b": _finite_or_none(stat_b),
            "difference": _finite_or_none(stat_a - stat_b), "ci_low": _finite_or_none(lo),
            "ci_high": _finite_or_none(hi), "confidence": confidence,
            "p_a_not_better": _finite_or_none(p_not_better), "p_two_sided": _finite_or_none(p_two),
            "n_resamples": int(n_resamples), "invalid_resamples": int(len(d) - len(valid)), "seed": int(seed)}


def holm(pvalues: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment (Holm 1979) of a family of p-values; None stays None (not tested).

    Reject hypothesis i at level alpha when its adjusted p-value is < alpha: this keeps the chance of
    any false rejection in the family at most alpha, whatever the dependence between the tests.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m, out, running = len(tested), [None] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def not_significantly_below(candidate: Sequence[float], best: Sequence[float], gold: Optional[Sequence[float]] = None,
                            *, metric: str = "spearman", alpha: float = ALPHA, n_resamples: int = N_BOOTSTRAP,
                            seed: int = 0) -> dict[str, Any]:
    """Is ``candidate`` not significantly below ``best`` (paired bootstrap on the same items)?

    ``below`` is True when the best system beats the candidate in at least ``1 - alpha`` of the
    replicates (one-sided test at level ``alpha``, i.e. ``p_a_not_better < alpha`` with A = best).
    Returns the bootstrap result of best - candidate plus ``below`` and ``tie_with_best``
    (= not below: mark the cell alongside the best one).
    """
    result = paired_bootstrap(best, candidate, gold, metric=metric, n_resamples=n_resamples, seed=seed)
    p = result["p_a_not_better"]
    below = bool(p is not None and p < alpha)
    return {**result, "alpha": alpha, "below": below, "tie_with_best": not below}


def tie_with_best_mask(scores: Sequence[float], items: Sequence[Sequence[float]], gold: Optional[Sequence[float]] = None,
                       *, metric: str = "spearman", alpha: float = ALPHA, n_resamples: int = N_BOOTSTRAP,
                       seed: int = 0) -> list[bool]:
    """For one table column: which systems to mark (the best and every one not significantly below it).

    ``scores[i]`` is system i's score (None/NaN: no result, never marked) and ``items[i]`` its
    per-item predictions on the shared test items (see :func:`paired_bootstrap`).
    """
    vals = np.array([np.nan if s is None else float(s) for s in scores])
    if not np.isfinite(vals).any():
        return [False] * len(vals)
    best = int(np.nanargmax(vals))
    out = []
    for i, v in enumerate(vals):
        if not np.isfinite(v):
            out.append(False)
        elif i == best:
            out.append(True)
        else:
            out.append(not_significantly_below(items[i], items[best], gold, metric=metric, alpha=alpha,
                                               n_resamples=n_resamples, seed=seed)["tie_with_best"])
    return out
