"""Which cells of a column are marked, and which wins count: paired bootstrap over the test items.

For each (model, dataset) column, with per-item outputs recorded for every filled row (and the
gold scores for STS), each row is compared with the column's best row (highest cell value) and
with the zero-shot row by :func:`tuner.stats.paired_bootstrap`: every replicate resamples the same
test items for both rows (2,000 replicates, seed 0).

The comparisons of a column with its best row are one **family**: the best row is picked by the
same test values, so each p-value is two-sided, and Holm's step-down correction
(:func:`tuner.stats.holm`) runs over the family (one comparison per other filled row). A row is
**marked** when it is the best or not significantly below it (its Holm-adjusted p >= alpha 0.05).
A **win** counts only when the best row is significantly above every other filled row after the
correction. :func:`below_best` is the rule; ``scripts/readme_tables.py`` applies it to the
p-values a ``matrix.json`` records.

The bootstrap resamples test items only. A cell with several seeds enters with the mean over its
seeds of each item's output (STS: the mean cosine similarity of each pair, whose Spearman
correlation with gold is the statistic; classification: each item's share of correct seeds, whose
mean is the mean accuracy), so the bootstrap measures item-sampling noise around the
seed-averaged system; the seed spread is reported separately (std, 95% t-interval). When every
fine-tuned cell of the matrix has one training seed, nothing measures the seed-to-seed spread:
the wins line and ``matrix.json`` (``significance.exploratory``) say the result is over test items
only and exploratory. ``tuner.stats`` accepts only 0/1 correctness, so averaged classification
items go through :func:`_fraction_bootstrap`, the same resampling with the mean as statistic.

A column where a filled row has no items (a study recorded before items were) falls back to the
former rule: the exact maximum is marked, ties count as wins for each, and ``matrix.json`` says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from tuner.exporter.rows import ZERO_SHOT
from tuner.stats import ALPHA, N_BOOTSTRAP, holm, paired_bootstrap

BOOTSTRAP_SEED = 0
CORRECTION = "holm"
RULE = (f"paired bootstrap over the test items (tuner.stats.paired_bootstrap, {N_BOOTSTRAP} replicates, seed "
        f"{BOOTSTRAP_SEED}; the same resampled items for both rows), two-sided p-values, Holm's correction over "
        f"the column's family (the best row against every other filled row): marked = the best cell of a column "
        f"and every cell not significantly below it (Holm-adjusted p >= {ALPHA}); a win counts only when the best "
        f"row is significantly above every other row after the correction; a cell with several seeds enters with "
        f"the mean over seeds of each item's output (the test covers test-item noise, not the training seed)")
EXPLORATORY = ("one training seed per cell: the test covers which test items were drawn, not the training seed, "
               "so a win is exploratory")
FALLBACK = ("no per-item outputs recorded for every row of this column (a study run before they were): the exact "
            "maximum is marked and ties count as wins for each, without a significance test")


@dataclass
class Significance:
    """Marks, wins and bootstrap results of every column (model, dataset) of a matrix."""

    marks: np.ndarray                                              # (models, rows, datasets) bool
    wins: dict[tuple[int, int], list[int]] = field(default_factory=dict)   # column -> winning rows
    tested: dict[tuple[int, int], bool] = field(default_factory=dict)      # column -> bootstrap ran
    why: dict[tuple[int, int], str] = field(default_factory=dict)          # column -> why it did not
    vs_best: dict[tuple[int, int, int], dict] = field(default_factory=dict)
    vs_zero_shot: dict[tuple[int, int, int], dict] = field(default_factory=dict)
    labels: tuple = ()
    max_seeds: int = 0                                             # most training seeds of a fine-tuned cell

    @property
    def exploratory(self) -> bool:
        """Every fine-tuned cell has one training seed: the tests cover test items only."""
        return self.max_seeds <= 1

    def to_json(self) -> dict[str, Any]:
        models, datasets = self.labels
        columns = [{"model": models[mi], "dataset": datasets[di], "tested": self.tested[(mi, di)],
                    **({"why_not": self.why[(mi, di)]} if (mi, di) in self.why else {})}
                   for mi, di in sorted(self.tested)]
        return {"rule": RULE, "fallback": FALLBACK, "alpha": ALPHA, "n_resamples": N_BOOTSTRAP,
                "seed": BOOTSTRAP_SEED, "p": "two_sided", "correction": CORRECTION,
                "family": "per column: the best row against every other filled row",
                "max_training_seeds": self.max_seeds, "exploratory": self.exploratory,
                **({"exploratory_why": EXPLORATORY} if self.exploratory else {}), "columns": columns,
                "all_tested": bool(self.tested) and all(self.tested.values())}


def _fraction_bootstrap(a: np.ndarray, b: np.ndarray, n_resamples: int, seed: int) -> dict[str, Any]:
    """paired_bootstrap's resampling for mean per-item correctness in [0, 1] (seed-averaged accuracy)."""
    n = len(a)
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_resamples, 250):
        idx = rng.integers(0, n, size=(min(250, n_resamples - start), n))
        diffs.append(a[idx].mean(axis=1) - b[idx].mean(axis=1))
    d = np.concatenate(diffs)
    lo, hi = np.quantile(d, [0.025, 0.975])
    p_not_better, p_not_worse = float(np.mean(d <= 0)), float(np.mean(d >= 0))
    return {"metric": "accuracy", "n": n, "a": float(a.mean()), "b": float(b.mean()),
            "difference": float(a.mean() - b.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "confidence": 0.95, "p_a_not_better": p_not_better,
            "p_two_sided": min(1.0, 2.0 * min(p_not_better, p_not_worse)), "n_resamples": n_resamples,
            "invalid_resamples": 0, "seed": seed}


def bootstrap(a: np.ndarray, b: np.ndarray, gold: Optional[np.ndarray], metric: str, *,
              n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """metric(A) - metric(B) over the same resampled items (see the module docstring)."""
    if metric == "accuracy" and not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
        return _fraction_bootstrap(a, b, n_resamples, seed)
    return paired_bootstrap(a, b, gold if metric == "spearman" else None, metric=metric,
                            n_resamples=n_resamples, seed=seed)


def _rank_centred(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    r = rankdata(a, axis=1)
    return r - r.mean(axis=1, keepdims=True)


def spearman_replicates(items: dict[int, np.ndarray], gold: np.ndarray, n_resamples: int = N_BOOTSTRAP,
                        seed: int = BOOTSTRAP_SEED) -> dict[int, np.ndarray]:
    """Per row, its Spearman correlation with gold in each bootstrap replicate ([n_resamples]).

    The replicates are :func:`tuner.stats.paired_bootstrap`'s (same generator, seed and batches of
    250), so the difference of two rows' replicates is exactly what ``paired_bootstrap`` resamples;
    drawing them once per column ranks gold and each row once instead of once per comparison."""
    n = len(gold)
    rng = np.random.default_rng(seed)
    out: dict[int, list[np.ndarray]] = {r: [] for r in items}
    for start in range(0, n_resamples, 250):
        idx = rng.integers(0, n, size=(min(250, n_resamples - start), n))
        rg = _rank_centred(gold[idx])
        gg = (rg * rg).sum(axis=1)
        for r, values in items.items():
            ra = _rank_centred(values[idx])
            denom = np.sqrt((ra * ra).sum(axis=1) * gg)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[r].append(np.where(denom > 0, (ra * rg).sum(axis=1) / denom, np.nan))
    return {r: np.concatenate(v) for r, v in out.items()}


def _from_replicates(a: np.ndarray, b: np.ndarray, gold: np.ndarray, ra: np.ndarray, rb: np.ndarray,
                     n_resamples: int) -> dict[str, Any]:
    """paired_bootstrap's result for Spearman from precomputed replicates."""
    from scipy.stats import spearmanr

    d = ra - rb
    valid = d[np.isfinite(d)]
    lo, hi = np.quantile(valid, [0.025, 0.975]) if len(valid) else (math.nan, math.nan)
    p_not_better = float(np.mean(valid <= 0)) if len(valid) else math.nan
    p_not_worse = float(np.mean(valid >= 0)) if len(valid) else math.nan
    sa, sb = float(spearmanr(a, gold).statistic), float(spearmanr(b, gold).statistic)
    return {"metric": "spearman", "n": len(a), "a": sa, "b": sb, "difference": sa - sb, "ci_low": float(lo),
            "ci_high": float(hi), "confidence": 0.95, "p_a_not_better": p_not_better,
            "p_two_sided": min(1.0, 2.0 * min(p_not_better, p_not_worse)), "n_resamples": n_resamples,
            "invalid_resamples": int(len(d) - len(valid)), "seed": BOOTSTRAP_SEED}


def _column_items(matrix: Any, mi: int, di: int, rows: list[int]) -> tuple[Optional[dict], Optional[np.ndarray], str]:
    """({row: values}, gold, why-not) for one column; None when a filled row lacks comparable items."""
    name = matrix.datasets[di]
    if matrix.metric not in ("spearman", "accuracy"):
        return None, None, f"metric {matrix.metric!r} has no item-level test"
    found = {ri: matrix.items.get((mi, ri, di)) for ri in rows}
    missing = [matrix.rows[ri] for ri, f in found.items() if f is None]
    if missing:
        return None, None, f"no per-item outputs for {', '.join(missing)}"
    shapes = {(f[0], f[1]) for f in found.values()}
    gold = None
    if matrix.metric == "spearman":
        g = matrix.gold.get(name)
        if g is None:
            return None, None, f"no gold scores recorded (study attr gold.{name}.{matrix.split})"
        shapes.add((g[0], g[1]))
        gold = g[2]
    if len(shapes) != 1:
        return None, None, "the rows' per-item records hold different items"
    return {ri: f[2] for ri, f in found.items()}, gold, ""


def below_best(tests: dict[Any, tuple[Optional[float], Optional[float]]],
               alpha: float = ALPHA) -> dict[Any, tuple[Optional[float], bool]]:
    """The column's rule: per other row ``(difference best - row, two-sided p)`` -> ``(Holm p, below)``.

    The family is the column's comparisons with its best row; ``below`` (significantly below the
    best) needs a Holm-adjusted p < ``alpha`` and a positive difference. A row without a p-value
    (not tested) is never below.
    """
    keys = list(tests)
    adjusted = holm([tests[k][1] for k in keys])
    return {k: (adj, bool(adj is not None and adj < alpha and (tests[k][0] or 0.0) > 0))
            for k, adj in zip(keys, adjusted)}


def significance_of(matrix: Any, n_resamples: int = N_BOOTSTRAP) -> Significance:
    """Marks and wins of every column of ``matrix`` (a :class:`tuner.exporter.matrix.Matrix`)."""
    n_models, _, n_data = matrix.values.shape
    sig = Significance(marks=np.zeros(matrix.values.shape, dtype=bool), labels=(matrix.models, matrix.datasets))
    zero = matrix.rows.index(ZERO_SHOT) if ZERO_SHOT in matrix.rows else None
    trained = [ri for ri in range(len(matrix.rows)) if ri != zero]
    filled = np.isfinite(matrix.values[:, trained, :])
    seeds = np.asarray(matrix.n_seeds)[:, trained, :] if np.size(matrix.n_seeds) else np.ones(filled.shape)
    sig.max_seeds = int(np.max(np.where(filled, seeds, 0))) if filled.any() else 0
    for mi in range(n_models):
        for di in range(n_data):
            column = matrix.values[mi, :, di]
            rows = [int(r) for r in np.flatnonzero(np.isfinite(column))]
            if not rows:
                continue
            top = max(column[r] for r in rows)
            items, gold, why = _column_items(matrix, mi, di, rows) if len(rows) > 1 else (None, None, "one row")
            if items is None:
                exact = [r for r in rows if column[r] == top]
                sig.marks[mi, exact, di] = True
                sig.wins[(mi, di)] = exact
                sig.tested[(mi, di)], sig.why[(mi, di)] = False, why
                continue
            best = next(r for r in rows if column[r] == top)
            sig.tested[(mi, di)] = True
            sig.marks[mi, best, di] = True
            reps = spearman_replicates(items, gold, n_resamples) if matrix.metric == "spearman" else None

            def test(a: int, b: int) -> dict[str, Any]:
                if reps is None:
                    return bootstrap(items[a], items[b], gold, matrix.metric, n_resamples=n_resamples)
                return _from_replicates(items[a], items[b], gold, reps[a], reps[b], n_resamples)

            for ri in rows:
                if zero is not None and ri != zero and zero in items:
                    sig.vs_zero_shot[(mi, ri, di)] = test(ri, zero)
                if ri != best:
                    sig.vs_best[(mi, ri, di)] = test(best, ri)
            verdict = below_best({ri: (sig.vs_best[(mi, ri, di)]["difference"], sig.vs_best[(mi, ri, di)]["p_two_sided"])
                                  for ri in rows if ri != best})
            for ri, (adjusted, below) in verdict.items():
                sig.vs_best[(mi, ri, di)].update(p_holm=adjusted, alpha=ALPHA, below=below)
                sig.marks[mi, ri, di] = not below
            sig.wins[(mi, di)] = [best] if all(below for _, below in verdict.values()) else []
    return sig


def _r(value: Any, digits: int = 6) -> Optional[float]:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), digits)


def cells_json(matrix: Any) -> list[dict[str, Any]]:
    """``matrix.json`` ``cells_detail``: per filled cell its seeds, spread, interval, trials and tests."""
    sig = matrix.significance
    out = []
    for mi, ri, di in zip(*np.nonzero(np.isfinite(matrix.values))):
        cell = (int(mi), int(ri), int(di))
        seeds = matrix.seeds.get(cell, {})
        summary = seeds.get("summary", {})
        record: dict[str, Any] = {
            "model": matrix.models[mi], "loss": matrix.rows[ri], "dataset": matrix.datasets[di],
            "mean": _r(matrix.values[cell]), "n_seeds": int(matrix.n_seeds[cell]), "std": _r(matrix.std[cell]),
            "ci95": None if summary.get("ci_low") is None else [_r(summary["ci_low"]), _r(summary["ci_high"])],
            "trials": seeds.get("trials", []), "seeds": seeds.get("seeds", []),
            "marked": bool(sig.marks[cell]) if sig is not None else None, "has_items": cell in matrix.items}
        for name, tests in (("vs_best", getattr(sig, "vs_best", {})), ("vs_zero_shot", getattr(sig, "vs_zero_shot", {}))):
            if cell in tests:
                t = tests[cell]
                record[name] = {"difference": _r(t["difference"]), "ci95": [_r(t["ci_low"]), _r(t["ci_high"])],
                                "p_first_not_better": _r(t["p_a_not_better"]), "p_two_sided": _r(t["p_two_sided"])}
                if name == "vs_best":            # the bold rule's: Holm over the column's comparisons with its best
                    record[name].update(p_holm=_r(t.get("p_holm")), below=t.get("below"))
        out.append(record)
    return out
