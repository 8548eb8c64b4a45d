"""``results.csv`` (long format) and ``results.md`` (one table per model) from a :class:`Matrix`."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from tuner.exporter.matrix import Matrix
from tuner.exporter.rows import title as row_title
from tuner.exporter.trials import metric_title

CSV_COLUMNS = ("model", "loss", "dataset", "dev", "test", "trial", "params")


def results_frame(matrix: Matrix) -> pd.DataFrame:
    """One line per cell (models x loss rows x datasets, in matrix order), empty where no trial.

    ``dev``/``test`` are the chosen trial's scores (0..1); ``trial`` is empty for the zero_shot row
    (a study attr) and for missing cells; ``params`` is the chosen trial's params as JSON.
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
                })
    frame = pd.DataFrame.from_records(records, columns=list(CSV_COLUMNS))
    frame["trial"] = frame["trial"].astype("Int64")
    return frame


def results_csv(matrix: Matrix) -> str:
    return results_frame(matrix).to_csv(index=False, float_format="%.6f", na_rep="")


def _float(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _fmt(value: float, scale: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * scale:.2f}"


def results_markdown(matrix: Matrix, scale: float = 100.0) -> str:
    """One table per model: loss rows x datasets plus a mean column; the best cell of each column in bold.

    Cells without a complete trial read ``n/a``; a mean over fewer than all datasets carries a ``†``
    (and is not compared with complete means when choosing the bold one). Loss rows without any result
    for any model are left out and named above the tables.
    """
    title = metric_title(matrix.metric)
    lines = [f"# Results{f' of study `{matrix.study_name}`' if matrix.study_name else ''}", "",
             f"{title} x{scale:g} on the **{matrix.split}** split, protocol **{matrix.protocol}**; "
             f"{matrix.filled}/{matrix.values.size} cells filled from {matrix.n_trials} complete trials. "
             "Where several trials fill a cell the one with the best **dev** score is shown (see matrix.json). "
             "Best per column in **bold**; `n/a` = no complete trial; † = mean over the available datasets only. "
             "A row is the set of losses that were on (weight > 0), cosine-MSE included; row order: matrix.json "
             "`rows_rule`.",
             ""]
    shown = [ri for ri in range(len(matrix.rows)) if np.isfinite(matrix.values[:, ri, :]).any()]
    hidden = [row_title(r) for ri, r in enumerate(matrix.rows) if ri not in shown]
    if hidden:
        lines += [f"Loss rows without any result (not in the study, or not run yet), left out below: "
                  f"{', '.join(hidden)}.", ""]
    with np.errstate(all="ignore"):
        for mi, model in enumerate(matrix.models):
            block = matrix.values[mi]                                     # (rows, datasets)
            counts = np.isfinite(block).sum(axis=1)
            means = np.where(counts > 0, np.nansum(block, axis=1) / np.maximum(counts, 1), np.nan)
            complete = counts == block.shape[1]
            lines += [f"## {model}", ""]
            header = ["Loss", *matrix.datasets, "Mean"]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" + "---:|" * (len(header) - 1))
            col_best = [_best(block[:, di]) for di in range(block.shape[1])]
            mean_pool = np.where(complete, means, np.nan) if complete.any() else means
            mean_best = _best(mean_pool)
            for ri, row in enumerate(matrix.rows):
                if ri not in shown:
                    continue
                cells = [row_title(row)]
                for di in range(block.shape[1]):
                    text = _fmt(block[ri, di], scale)
                    cells.append(f"**{text}**" if ri in col_best[di] else text)
                text = _fmt(means[ri], scale)
                text = f"**{text}**" if ri in mean_best else text
                cells.append(text + ("" if complete[ri] or not math.isfinite(means[ri]) else " †"))
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            wins = wins_line(block, matrix.rows, matrix.datasets, col_best)
            if wins:
                lines += [wins, ""]
    return "\n".join(lines)


def wins_line(block: np.ndarray, rows: tuple, datasets: tuple, col_best: "list[set[int]] | None" = None) -> str:
    """"Wins (best on a dataset): <row title> 3/7 (sts12, ...), ..." for one model's (rows, datasets)
    block, most wins first; a tie counts for every tied row. Empty with fewer than two datasets."""
    if len(datasets) < 2:
        return ""
    col_best = col_best if col_best is not None else [_best(block[:, di]) for di in range(block.shape[1])]
    scored = sum(1 for best in col_best if best)
    counts = {ri: [datasets[di] for di, best in enumerate(col_best) if ri in best] for ri in range(len(rows))}
    ranked = sorted(((ri, names) for ri, names in counts.items() if names), key=lambda x: (-len(x[1]), x[0]))
    if not ranked:
        return ""
    parts = [f"{row_title(rows[ri])} {len(names)}/{scored} ({', '.join(names)})" for ri, names in ranked]
    return "Wins (best on a dataset; ties count for each): " + "; ".join(parts) + "."


def _best(column: np.ndarray) -> set[int]:
    """Row indices holding the column maximum (all of them on a tie); empty when the column is all NaN."""
    finite = np.isfinite(column)
    if not finite.any():
        return set()
    top = np.max(column[finite])
    return {int(i) for i in np.flatnonzero(finite & (column == top))}
