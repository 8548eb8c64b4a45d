"""``results.csv`` (long format) and ``results.md`` (one table per model) from a :class:`Matrix`."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from tuner.exporter.matrix import Matrix
from tuner.exporter.rows import title as row_title
from tuner.data.overlap import headline
from tuner.data.sampling import rows_line
from tuner.exporter.trials import metric_title

CSV_COLUMNS = ("model", "loss", "dataset", "dev", "test", "trial", "params", "n_seeds", "std", "ci_low", "ci_high",
               "trials", "marked", "diff_vs_best", "p_vs_best", "diff_vs_zero_shot", "p_vs_zero_shot")


def results_frame(matrix: Matrix) -> pd.DataFrame:
    """One line per cell (models x loss rows x datasets, in matrix order), empty where no trial.

    ``dev``/``test`` are the chosen trial's scores (0..1); ``trial`` is empty for the zero_shot row
    (a study attr) and for missing cells; ``params`` is the chosen trial's params as JSON.
    ``p_vs_best`` is the Holm-adjusted two-sided p of the column's best row against this one (the
    bold rule's); ``p_vs_zero_shot`` the one-sided, uncorrected share of replicates where this row
    does not beat zero-shot.
    """
    records: list[dict[str, Any]] = []
    for mi, model in enumerate(matrix.models):
        for ri, row in enumerate(matrix.rows):
            for di, dataset in enumerate(matrix.datasets):
                number = int(matrix.trials[mi, ri, di])
                params = matrix.params.get((mi, ri, di))
                records.append({
                    "model": model, "loss": row, "dataset": dataset,
                    "dev": _float(matrix.dev[mi, ri, di]), "test": _float(matrix.test[mi, ri, di]),
                    "trial": number if number >= 0 else None,
                    "params": json.dumps(params, sort_keys=True, default=str) if params is not None else "",
                    **_cell_stats(matrix, (mi, ri, di)),
                })
    frame = pd.DataFrame.from_records(records, columns=list(CSV_COLUMNS))
    frame["trial"] = frame["trial"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame


def _cell_stats(matrix: Matrix, cell: tuple[int, int, int]) -> dict[str, Any]:
    """The seed spread and the bootstrap results of one cell (empty where they do not apply)."""
    summary = matrix.seeds.get(cell, {}).get("summary", {})
    sig = matrix.significance
    filled = math.isfinite(float(matrix.values[cell]))
    best = sig.vs_best.get(cell, {}) if sig is not None else {}
    zero = sig.vs_zero_shot.get(cell, {}) if sig is not None else {}
    return {"n_seeds": int(matrix.n_seeds[cell]) if filled else None, "std": _float(matrix.std[cell]),
            "ci_low": _num(summary.get("ci_low")), "ci_high": _num(summary.get("ci_high")),
            "trials": " ".join(str(t) for t in matrix.seeds.get(cell, {}).get("trials", [])),
            "marked": bool(sig.marks[cell]) if sig is not None and filled else None,
            "diff_vs_best": _num(best.get("difference")), "p_vs_best": _num(best.get("p_holm")),
            "diff_vs_zero_shot": _num(zero.get("difference")), "p_vs_zero_shot": _num(zero.get("p_a_not_better"))}


def _num(value: Any) -> float:
    return math.nan if value is None else _float(value)


def results_csv(matrix: Matrix) -> str:
    return results_frame(matrix).to_csv(index=False, float_format="%.6f", na_rep="")


def _float(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _fmt(value: float, scale: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * scale:.2f}"


def results_markdown(matrix: Matrix, scale: float = 100.0) -> str:
    """One table per model: loss rows x datasets plus a mean column, marked cells in bold.

    A column's marked cells are its best and every cell not significantly below it (paired bootstrap
    over the test items, :mod:`tuner.exporter.significance`); columns without per-item records mark
    the exact maximum. The mean column marks its exact maximum (no item-level test across datasets).
    Cells with several seeds read ``mean ± std``. Cells without a complete trial read ``n/a``; a mean
    over fewer than all datasets carries a ``†`` (and is not compared with complete means). Loss rows
    without any result for any model are left out and named above the tables.
    """
    lines = _preamble(matrix, scale)
    shown = [ri for ri in range(len(matrix.rows)) if np.isfinite(matrix.values[:, ri, :]).any()]
    hidden = [row_title(r) for ri, r in enumerate(matrix.rows) if ri not in shown]
    if hidden:
        lines += [f"Loss rows without any result (not in the study, or not run yet), left out below: "
                  f"{', '.join(hidden)}.", ""]
    for mi, model in enumerate(matrix.models):
        lines += [f"## {model}", "", *_model_table(matrix, mi, shown, scale), ""]
        wins = _model_wins(matrix, mi)
        if wins:
            lines += [wins, ""]
    return "\n".join(lines)


def _preamble(matrix: Matrix, scale: float) -> list[str]:
    sig = matrix.significance
    tested = sig is not None and sig.tested and all(sig.tested.values())
    rule = ("**Bold**: the best cell of each column and every cell not significantly below it (paired bootstrap "
            "over the test items, two-sided p < 0.05 after Holm's correction over the column's comparisons with "
            "its best; matrix.json `significance`" + ("; one training seed per cell, so over test items only: "
                                                      "exploratory" if sig.exploratory else "") + ")" if tested else
            "**Bold**: the best cell of each column" + (" (a significance test where per-item outputs were "
                                                         "recorded; not for every column: see matrix.json "
                                                         "`significance`)" if sig is not None and any(sig.tested.values())
                                                         else " (no per-item outputs recorded, so no significance "
                                                              "test: a study run before they were)"))
    lines = [f"# Results{f' of study `{matrix.study_name}`' if matrix.study_name else ''}", "",
             f"{metric_title(matrix.metric)} x{scale:g} on the **{matrix.split}** split, protocol "
             f"**{matrix.protocol}**; {matrix.filled}/{matrix.values.size} cells filled from {matrix.n_trials} "
             "complete trials. Where several configurations fill a cell the one with the best (mean) **dev** score "
             "is shown; several seeds of one configuration are averaged, `mean ± std` over seeds (see matrix.json). "
             f"{rule}; `n/a` = no complete trial; † = mean over the available datasets only. "
             "A row is the set of losses that were on (weight > 0), cosine-MSE included; row order: matrix.json "
             "`rows_rule`.", ""]
    overlap = [f"- {name}: {_overlap_line(matrix.overlap[name])}" for name in matrix.datasets if name in matrix.overlap]
    if overlap:
        lines += [f"Train/test overlap under protocol {matrix.protocol} (scored test rows whose sentences occur in "
                  "the protocol's train split):", "", *overlap, ""]
    rows = [f"- {name}: {rows_line(matrix.eval_rows[name])}" for name in matrix.datasets if name in matrix.eval_rows]
    if rows:
        lines += ["Scored rows (dev selects, test reports):", "", *rows, ""]
    return lines


def _overlap_line(report: dict) -> str:
    if "error" in report:
        return f"not measured ({report['error']})"
    try:
        return headline(report)
    except (KeyError, TypeError, ValueError):
        return "recorded in an unknown form (see matrix.json)"


def _model_table(matrix: Matrix, mi: int, shown: list[int], scale: float) -> list[str]:
    block = matrix.values[mi]                                     # (rows, datasets)
    with np.errstate(all="ignore"):
        counts = np.isfinite(block).sum(axis=1)
        means = np.where(counts > 0, np.nansum(block, axis=1) / np.maximum(counts, 1), np.nan)
    complete = counts == block.shape[1]
    header = ["Loss", *matrix.datasets, "Mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    marked = _marked(matrix, mi)
    mean_best = best_rows(np.where(complete, means, np.nan) if complete.any() else means)
    for ri in shown:
        cells = [row_title(matrix.rows[ri])]
        for di in range(block.shape[1]):
            text = _fmt(block[ri, di], scale)
            if matrix.n_seeds.size and matrix.n_seeds[mi, ri, di] > 1 and math.isfinite(matrix.std[mi, ri, di]):
                text += f" ± {matrix.std[mi, ri, di] * scale:.2f}"
            cells.append(f"**{text}**" if ri in marked[di] else text)
        text = _fmt(means[ri], scale)
        text = f"**{text}**" if ri in mean_best else text
        cells.append(text + ("" if complete[ri] or not math.isfinite(means[ri]) else " †"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _marked(matrix: Matrix, mi: int) -> list[set[int]]:
    """Per dataset, the rows to mark in bold (significance marks, else the exact maximum)."""
    sig = matrix.significance
    if sig is None:
        return [best_rows(matrix.values[mi, :, di]) for di in range(len(matrix.datasets))]
    return [{int(r) for r in np.flatnonzero(sig.marks[mi, :, di])} for di in range(len(matrix.datasets))]


def _model_wins(matrix: Matrix, mi: int) -> str:
    sig = matrix.significance
    if sig is None or not any(sig.tested.get((mi, di), False) for di in range(len(matrix.datasets))):
        return wins_line(matrix.values[mi], matrix.rows, matrix.datasets)
    winners = [set(sig.wins.get((mi, di), [])) for di in range(len(matrix.datasets))]
    scored = sum(1 for di in range(len(matrix.datasets)) if (mi, di) in sig.tested)
    exact = [matrix.datasets[di] for di in range(len(matrix.datasets)) if sig.tested.get((mi, di)) is False]
    return wins_line(matrix.values[mi], matrix.rows, matrix.datasets, winners, significant=True, scored=scored,
                     untested=exact, exploratory=sig.exploratory)


def wins_line(block: np.ndarray, rows: tuple, datasets: tuple, col_best: "list[set[int]] | None" = None, *,
              significant: bool = False, scored: "int | None" = None, untested: "list[str] | None" = None,
              exploratory: bool = False) -> str:
    """"Wins (best on a dataset): <row title> 3/7 (sts12, ...), ..." for one model's (rows, datasets)
    block, most wins first; a tie counts for every tied row. Empty with fewer than two datasets.

    ``significant``: ``col_best`` holds per dataset the row that is significantly above every other
    (or nothing) after Holm's correction over the column's comparisons, and the line says so;
    ``untested`` names datasets where the exact best counted; ``exploratory`` (one training seed per
    cell) says that the test covers test items only."""
    if len(datasets) < 2:
        return ""
    col_best = col_best if col_best is not None else [best_rows(block[:, di]) for di in range(block.shape[1])]
    scored = scored if scored is not None else sum(1 for di in range(block.shape[1]) if np.isfinite(block[:, di]).any())
    counts = {ri: [datasets[di] for di, best in enumerate(col_best) if ri in best] for ri in range(len(rows))}
    ranked = sorted(((ri, names) for ri, names in counts.items() if names), key=lambda x: (-len(x[1]), x[0]))
    parts = [f"{row_title(rows[ri])} {len(names)}/{scored} ({', '.join(names)})" for ri, names in ranked]
    if not significant:
        return "Wins (best on a dataset; ties count for each): " + "; ".join(parts) + "." if parts else ""
    note = f" (no test on {', '.join(untested)}: there the exact best counts)" if untested else ""
    seeds = "; one training seed per cell, so over test items only: exploratory" if exploratory else ""
    head = ("Significant wins (best row significantly above every other row: paired bootstrap over the test items, "
            f"two-sided p < 0.05 after Holm's correction over the column's comparisons{seeds})" + note)
    return f"{head}: " + ("; ".join(parts) if parts else f"none on {scored} datasets") + "."


def best_rows(column: np.ndarray) -> set[int]:
    """Row indices holding the column maximum (all of them on a tie); empty when the column is all NaN."""
    finite = np.isfinite(column)
    if not finite.any():
        return set()
    top = np.max(column[finite])
    return {int(i) for i in np.flatnonzero(finite & (column == top))}
