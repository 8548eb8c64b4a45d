"""The report of a confirm study: per configuration its spread over seeds, paired tests, the winner.

Input: the plan (:mod:`tuner.service._confirm_plan`), the confirm study's trials and user attrs.

* **Seeds.** Each configuration's (and trained baseline's) dev and test value per seed (the mean
  over the eval sets, as a trial records it) -> mean, sample std and the two-sided 95% Student-t
  interval (:func:`tuner.stats.seed_summary`). The zero-shot model has no seed: one value.
* **Paired comparison over seeds x test items** (:func:`paired_over_seeds`): a two-stage paired
  bootstrap. Every replicate resamples the test items (the same items for both systems and for
  every seed: a test item is the unit both systems share) and, independently, the seeds (with
  replacement, among the seeds both ran); its statistic is the mean over the resampled seeds (and
  the eval sets) of metric(A) - metric(B). So the interval and p-value carry both sources of
  noise: which training seed a run drew and which test items the test set happens to hold.
  Per-seed Spearman replicates come from :func:`tuner.exporter.significance.spearman_replicates`
  (the generator of :func:`tuner.stats.paired_bootstrap`). ``p`` is two-sided.
* **Holm** across the whole family of comparisons (each configuration against the best one and
  against each baseline): :func:`tuner.stats.holm`.
* **Winner**: the configuration with the highest confirmed *dev* mean (selection never looks at
  test), and only when it is significantly better on test (Holm-adjusted, alpha 0.05) than every
  other configuration, the runner-up included; otherwise ``winner`` is None and ``tie`` names
  the configurations not significantly below it.
* **Proxy**: Spearman between the parent study's dev values and the confirmed test means over the
  configurations: how well the cheap search ranked them.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from tuner.exporter.items import decode_items, gold_key, items_key, zero_shot_items_key
from tuner.exporter.significance import BOOTSTRAP_SEED, spearman_replicates
from tuner.exporter.trials import finite, trial_score, trial_value
from tuner.stats import ALPHA, N_BOOTSTRAP, holm, seed_summary

ZERO_SHOT = "zero-shot"   # the zero-shot baseline's name (a --baselines value and a report label)
SEED_STREAM = 1           # the seed resampling draws from BOOTSTRAP_SEED + this (the items from BOOTSTRAP_SEED)
Items = dict[Any, dict[str, np.ndarray]]   # seed -> dataset -> per-item outputs


def _replicates(items: dict[Any, np.ndarray], gold: Optional[np.ndarray], metric: str,
                n_resamples: int) -> dict[Any, np.ndarray]:
    """Per system, its metric on each bootstrap replicate of the items (the same items for all)."""
    if metric == "spearman":
        return spearman_replicates(items, gold, n_resamples, BOOTSTRAP_SEED)
    n = len(next(iter(items.values())))
    rng = np.random.default_rng(BOOTSTRAP_SEED)  # the draws of spearman_replicates: batches of 250
    out: dict[Any, list[np.ndarray]] = {k: [] for k in items}
    for start in range(0, n_resamples, 250):
        idx = rng.integers(0, n, size=(min(250, n_resamples - start), n))
        for k, values in items.items():
            out[k].append(values[idx].mean(axis=1))
    return {k: np.concatenate(v) for k, v in out.items()}


def _observed(values: np.ndarray, gold: Optional[np.ndarray], metric: str) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(values, gold).statistic) if metric == "spearman" else float(values.mean())


def paired_over_seeds(a: Items, b: Items, gold: Mapping[str, Optional[np.ndarray]], metric: str, *,
                      n_resamples: int = N_BOOTSTRAP) -> Optional[dict[str, Any]]:
    """metric(A) - metric(B) over seeds x test items (module docstring); None without a common seed.

    ``a``/``b``: per seed, per eval set, the per-item outputs on the same items."""
    seeds = sorted(set(a) & set(b), key=str)
    if not seeds:
        return None
    datasets = sorted(gold)
    diffs, observed = [], []
    for d in datasets:
        reps = _replicates({**{("a", s): a[s][d] for s in seeds}, **{("b", s): b[s][d] for s in seeds}},
                           gold[d], metric, n_resamples)
        diffs.append(np.stack([reps[("a", s)] - reps[("b", s)] for s in seeds]))    # [seeds, B]
        observed += [_observed(a[s][d], gold[d], metric) - _observed(b[s][d], gold[d], metric) for s in seeds]
    per_seed = np.mean(diffs, axis=0)                                                 # mean over eval sets
    weights = np.random.default_rng(BOOTSTRAP_SEED + SEED_STREAM).multinomial(
        len(seeds), [1.0 / len(seeds)] * len(seeds), size=per_seed.shape[1])       # [B, seeds]
    d = (weights * per_seed.T).sum(axis=1) / len(seeds)
    valid = d[np.isfinite(d)]
    if not len(valid):
        return None
    lo, hi = np.quantile(valid, [0.025, 0.975])
    below, above = float(np.mean(valid <= 0)), float(np.mean(valid >= 0))
    return {"difference": finite(np.mean(observed)), "ci": [float(lo), float(hi)], "p": min(1.0, 2 * min(below, above)),
            "seeds": len(seeds), "items": {ds: int(len(a[seeds[0]][ds])) for ds in datasets},
            "n_resamples": int(n_resamples), "invalid_resamples": int(len(d) - len(valid))}


def _runs(trials: Sequence[Any], label: str) -> dict[int, Any]:
    """seed -> the COMPLETE trial of system ``label`` (one per cell)."""
    return {int(t.params["seed"]): t for t in trials
            if t.params.get("config") == label and str(getattr(t.state, "name", t.state)) == "COMPLETE"}


def _values(record: Any) -> Optional[np.ndarray]:
    decoded = decode_items(record)
    return None if decoded is None else decoded[2]


def _summary(values: Sequence[Optional[float]]) -> dict[str, Any]:
    s = seed_summary([v for v in values if v is not None])
    return {"mean": s["mean"], "std": s["std"], "ci": None if s["ci_low"] is None else [s["ci_low"], s["ci_high"]]}


def _system(label: str, runs: dict[int, Any], datasets: list[str], extra: dict[str, Any]) -> tuple[dict, Items]:
    """The JSON entry of one trained system and its per-seed test items."""
    seeds = sorted(runs)
    tests = [finite(np.mean([trial_score(runs[s], "test", d) for d in datasets])) for s in seeds]
    items: Items = {}
    for s in seeds:
        found = {d: _values(runs[s].user_attrs.get(items_key("test", d))) for d in datasets}
        if all(v is not None for v in found.values()):
            items[s] = found
    entry = {"label": label, **extra, "seeds": seeds, "dev": _summary([trial_value(runs[s]) for s in seeds]),
             "test": _summary(tests), "cost": _cost([runs[s] for s in seeds])}
    return entry, items


def _cost(trials: Sequence[Any]) -> dict[str, Any]:
    """What a system's cells took: mean CPU seconds (the trial's ``cpu_s``) and wall seconds per cell."""
    cpu = [float(t.user_attrs["cpu_s"]) for t in trials if finite(t.user_attrs.get("cpu_s")) is not None]
    wall = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
            if getattr(t, "datetime_start", None) is not None and getattr(t, "datetime_complete", None) is not None]
    return {"cells": len(trials), "cpu_s_per_cell": float(np.mean(cpu)) if cpu else None,
            "wall_s_per_cell": float(np.mean(wall)) if wall else None}


def compare_across(a: tuple[Sequence[Any], Mapping[str, Any], str], b: tuple[Sequence[Any], Mapping[str, Any], str],
                   datasets: Sequence[str], metric: str = "spearman", *,
                   n_resamples: int = N_BOOTSTRAP) -> dict[str, Any]:
    """System A of one confirm study against system B of another, on the same test items: each of
    ``a``/``b`` is (the confirm study's trials, its user attrs, the system's label), e.g. STS-B's
    answer trained on SICK-R (``confirm --on sickr``) against SICK-R's own answer. Both entries and
    :func:`paired_over_seeds` over their common seeds; the studies must have recorded the same
    gold items, else a ValueError says which dataset differs."""
    entries, items, gold = [], [], {}
    for trials, attrs, label in (a, b):
        runs = _runs(trials, label)
        if not runs:
            raise ValueError(f"no COMPLETE cell of '{label}' in that confirm study")
        entry, found = _system(label, runs, list(datasets), {})
        entries.append(entry)
        items.append(found)
        for d in datasets:
            values = _values(attrs.get(gold_key(d, "test"))) if metric == "spearman" else None
            if d in gold and not (values is None and gold[d] is None or np.array_equal(values, gold[d])):
                raise ValueError(f"the two confirm studies scored different {d} test items; compare studies "
                                 "scored on the same test file")
            gold[d] = values
    return {"a": entries[0], "b": entries[1], "metric": metric, "datasets": list(datasets),
            "comparison": paired_over_seeds(items[0], items[1], gold, metric, n_resamples=n_resamples)}


def _zero_shot(plan: Mapping[str, Any], attrs: Mapping[str, Any], model: str, label: str) -> tuple[dict, Items]:
    """The zero-shot row of ``model``, recorded once by the confirm study's first trial on it."""
    splits = {}
    for split in ("dev", "test"):
        found = [finite(attrs.get(f"zero_shot.{model}.{d}.{split}")) for d in plan["datasets"]]
        splits[split] = {"mean": None if None in found else float(np.mean(found)), "std": None, "ci": None}
    found = {d: _values(attrs.get(zero_shot_items_key(model, d, "test"))) for d in plan["datasets"]}
    items = {s: found for s in plan["seeds"]} if all(v is not None for v in found.values()) else {}
    return {"label": label, "model": model, "params": {}, "seeds": [], **splits}, items


def confirm_report(plan: Mapping[str, Any], trials: Sequence[Any], attrs: Mapping[str, Any], *,
                   n_resamples: int = N_BOOTSTRAP, alpha: float = ALPHA) -> dict[str, Any]:
    """The report (``confirm --json``; see docs/confirm.md) of a confirm study's trials and attrs."""
    datasets = list(plan["datasets"])
    configs, items = [], {}
    for c in plan["configs"]:
        entry, items[c["label"]] = _system(c["label"], _runs(trials, c["label"]), datasets,
                                           {"model": c["model"], "params": c["params"], "parent_trials": c["parent_trials"],
                                            "parent_dev": c["parent_dev"]})
        configs.append(entry)
    baselines = []
    for b in plan["trained_baselines"]:
        entry, items[b["label"]] = _system(b["label"], _runs(trials, b["label"]), datasets,
                                           {"model": b["model"], "params": b["params"], "recipe": b.get("recipe")})
        baselines.append(entry)
    if ZERO_SHOT in plan["baselines"]:
        models = list(dict.fromkeys(c["model"] for c in plan["configs"]))
        for model in models:
            label = ZERO_SHOT if len(models) == 1 else f"{ZERO_SHOT} {model}"
            entry, items[label] = _zero_shot(plan, attrs, model, label)
            baselines.append(entry)
    gold = {d: (_values(attrs.get(gold_key(d, "test"))) if plan["metric"] == "spearman" else None) for d in datasets}
    ranked = sorted(configs, key=lambda c: (c["dev"]["mean"] is None, -(c["dev"]["mean"] or 0.0)))
    comparisons = _comparisons(ranked, baselines, items, gold, plan["metric"], n_resamples, alpha)
    winner, tie = _winner(ranked, comparisons)
    return {"study": None, "parent": plan["parent"], "on": plan.get("on"), "model": plan.get("model"),
            "metric": plan["metric"], "datasets": datasets,
            "configs": ranked, "baselines": baselines, "winner": winner, "tie": tie, "comparisons": comparisons,
            "alpha": alpha, "budget": {**plan["budget"], "seeds": list(plan["seeds"])},
            "proxy": proxy_spearman(ranked)}


def _comparisons(ranked: list[dict], baselines: list[dict], items: dict[str, Items], gold: Mapping[str, Any],
                 metric: str, n_resamples: int, alpha: float) -> list[dict[str, Any]]:
    """Each configuration against the best (by dev) and against each baseline; Holm over all of them."""
    pairs = [(ranked[0]["label"], c["label"], "vs_best") for c in ranked[1:]]
    pairs += [(c["label"], b["label"], "vs_baseline") for c in ranked for b in baselines]
    out = []
    missing_gold = metric == "spearman" and any(g is None for g in gold.values())
    for a, b, kind in pairs:
        result = None if missing_gold or not items[a] or not items[b] else \
            paired_over_seeds(items[a], items[b], gold, metric, n_resamples=n_resamples)
        out.append({"a": a, "b": b, "kind": kind, **(result or {"difference": None, "ci": None, "p": None})})
    for entry, adjusted in zip(out, holm([e["p"] for e in out])):
        entry["p_holm"] = adjusted
        entry["significant"] = adjusted is not None and adjusted < alpha
    return out


def _winner(ranked: list[dict], comparisons: list[dict]) -> tuple[Optional[str], list[str]]:
    """(winner or None, the configurations not significantly below the best one)."""
    if not ranked or ranked[0]["dev"]["mean"] is None:
        return None, []
    best = ranked[0]["label"]
    versus = [c for c in comparisons if c["kind"] == "vs_best"]
    beaten = [c["b"] for c in versus if c["significant"] and (c["difference"] or 0.0) > 0]
    tie = [best] + [c["b"] for c in versus if c["b"] not in beaten]
    return (best if len(tie) == 1 else None), tie


def proxy_spearman(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Spearman of the parent's dev values against the confirmed test means (3 or more configurations)."""
    from scipy.stats import spearmanr

    pairs = [(c["parent_dev"], c["test"]["mean"]) for c in configs
             if c.get("parent_dev") is not None and c["test"]["mean"] is not None]
    out: dict[str, Any] = {"n": len(pairs), "spearman": None, "p": None,
                           "of": "the parent study's dev value vs the confirmed test mean, over the configurations"}
    if len(pairs) >= 3:
        result = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
        out.update(spearman=finite(result.statistic), p=finite(result.pvalue))
    return out


def format_block(block: Mapping[str, Any]) -> str:
    """A dev/test block x100 with its 95% interval (``85.56 [85.08, 86.05]``), ``-`` when empty."""
    if block["mean"] is None:
        return "-"
    text = f"{100 * block['mean']:.2f}"
    return text + (f" [{100 * block['ci'][0]:.2f}, {100 * block['ci'][1]:.2f}]" if block.get("ci") else "")


def format_p(p: float, n_resamples: Optional[int] = None, family: int = 1) -> str:
    """A bootstrap p-value for reports: ``0.0311``; a p of 0 (no resample crossed zero) as the
    bound the resamples give, ``< 0.001`` for 2,000 two-sided, never ``0``; a Holm-adjusted 0 over
    ``family`` comparisons is bounded by ``family`` times that."""
    if p == 0 and n_resamples:
        return f"< {2 * family / n_resamples:.2g}"
    return f"{p:.3g}"


def verdict(report: Mapping[str, Any], bold: bool = False) -> str:
    """The winner, the named tie, or (``--top 1``) the one configuration with nothing to compare it with."""
    name = (lambda label: f"**{label}**") if bold else str
    winner = report["winner"]
    if winner is not None and len(report["configs"]) == 1:
        return (f"One configuration: {name(winner)}, the search's best; with nothing to compare it with it is "
                "neither a winner nor a tie (its comparisons with the baselines are in the report).")
    if winner is not None:
        return (f"Winner: {name(winner)} (significantly better on test than every other configuration, Holm, "
                f"alpha {report['alpha']}).")
    return f"No winner: {', '.join(report['tie']) or 'no results'} are tied (not significantly different on test)."


def moved_to(on: Optional[str], model: Optional[str]) -> str:
    """`` on sickr with all-mpnet-base-v2`` for ``confirm --on/--model`` (empty when neither is set)."""
    return (f" on {on}" if on else "") + (f" with {model}" if model else "")


def format_report(report: Mapping[str, Any]) -> str:
    """The text report: a table, the significant comparisons, the winner or the tie, the proxy."""
    def cpu(entry: Mapping[str, Any]) -> str:
        value = (entry.get("cost") or {}).get("cpu_s_per_cell")
        return "-" if value is None else f"{value / 60:.1f}"

    rows = [("", "system", "seeds", "dev x100 [95% CI]", "test x100 [95% CI]", "parent dev", "CPU min/cell")]
    for i, c in enumerate(report["configs"]):
        parent = "-" if c.get("parent_dev") is None else f"{100 * c['parent_dev']:.2f}"
        rows.append((str(i + 1), c["label"], str(len(c["seeds"])), format_block(c["dev"]), format_block(c["test"]), parent, cpu(c)))
    for b in report["baselines"]:
        rows.append(("b", b["label"], str(len(b["seeds"])), format_block(b["dev"]), format_block(b["test"]), "-", cpu(b)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    cells = report.get("cells")
    partial = report.get("complete") is False and cells is not None
    moved = moved_to(report.get("on"), report.get("model"))
    if moved:
        lines.insert(0, f"trained{moved} (the parent dev values are the search's)")
    if partial:  # a report while cells are still to run: no verdict yet
        lines.insert(0, f"partial: {cells['complete']} of {cells['total']} cells complete; run the same command to "
                        "resume")
    lines.append("")
    family = sum(c["p"] is not None for c in report["comparisons"])  # what Holm adjusted over
    for c in report["comparisons"]:
        if c["p"] is None:
            lines.append(f"{c['a']} vs {c['b']}: not tested (no per-item outputs or no common seed)")
            continue
        mark = "significant" if c["significant"] else "not significant"
        n = c.get("n_resamples")
        lines.append(f"{c['a']} - {c['b']}: {100 * c['difference']:+.2f} [{100 * c['ci'][0]:+.2f}, {100 * c['ci'][1]:+.2f}]"
                     f", p {format_p(c['p'], n)}, Holm {format_p(c['p_holm'], n, family)}: {mark}")
    if report["winner"] is not None or not partial:
        lines.append(verdict(report))
    else:
        lines.append("no verdict yet: not every cell has run")
    proxy = report["proxy"]
    rho = "n/a (needs 3 or more configurations)" if proxy["spearman"] is None else f"{proxy['spearman']:.3f}"
    lines.append(f"search dev value vs confirmed test mean, Spearman over {proxy['n']} configurations: {rho}")
    return "\n".join(lines)
