"""Non-grid studies (TPE, random, ...): the leaderboard of the top-k complete trials.

:func:`leaderboard_frame` ranks the trials by objective value (the mean **dev** score) and lists
each one's row (the losses that were on, cosine-MSE included), its params -- the on/off params
``use_<loss>`` first, then weights and taus in registry order, then the rest -- and its per-dataset
dev/test scores. The best config files are in :mod:`tuner.exporter.best`, Optuna's plots in
:mod:`tuner.exporter.optuna_plots`.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from tuner.exporter.rows import title
from tuner.exporter.toml import toml_dumps  # noqa: F401 - re-exported: tuner.api and tests/_tiny.py import it here
from tuner.exporter.trials import SPLITS, metric_title, trial_datasets, trial_model, trial_row, trial_score, trial_value
from tuner.losses.registry import loss_names, param_loss

_KIND_ORDER = ("use", "w", "tau")
LOSSES_PARAM = "losses"                   # the search's choice among listed combinations
_HIDDEN_PARAMS = ("model", "loss")        # columns of their own


def ranked_trials(trials: Sequence[Any], direction: str = "maximize") -> list[Any]:
    """Trials with a finite value, best first (ties: lower trial number)."""
    sign = -1.0 if str(direction).lower().endswith("maximize") else 1.0
    usable = [t for t in trials if trial_value(t) is not None]
    return sorted(usable, key=lambda t: (sign * trial_value(t), t.number))


def _row(trial: Any) -> str:
    try:
        return trial_row(trial)
    except ValueError:
        return str(trial.user_attrs.get("loss", "?"))


def param_order(name: str) -> tuple:
    """Leaderboard column order: ``losses`` (a choice among combinations), ``use_*``, ``w_*``, ``tau_*``
    (registry order within each), then the rest."""
    if name == LOSSES_PARAM:
        return (0, -1, 0, name)
    parsed = param_loss(name)
    if parsed is None:
        return (1, 0, 0, name)
    kind, loss = parsed
    return (0, _KIND_ORDER.index(kind), loss_names().index(loss), name)


def leaderboard_frame(trials: Sequence[Any], direction: str = "maximize", top_k: int = 10) -> pd.DataFrame:
    """Top ``top_k`` trials: rank, trial, value (mean dev), model, loss (row), params, ``dev.<d>``/``test.<d>``.

    A param a trial did not sample (a loss's weight while that loss was off) is empty.
    """
    top = ranked_trials(trials, direction)[: max(int(top_k), 0)]
    params = sorted({name for t in top for name in t.params if name not in _HIDDEN_PARAMS}, key=param_order)
    datasets: list[str] = []
    for trial in top:
        datasets += [d for d in trial_datasets(trial) if d not in datasets]
    records = []
    for rank, trial in enumerate(top, start=1):
        record: dict[str, Any] = {"rank": rank, "trial": trial.number, "value": trial_value(trial),
                                  "model": trial_model(trial), "loss": _row(trial)}
        record.update({name: trial.params.get(name) for name in params})
        for split in SPLITS[::-1]:
            for name in datasets:
                score = trial_score(trial, split, name)
                record[f"{split}.{name}"] = math.nan if score is None else score
        records.append(record)
    columns = ["rank", "trial", "value", "model", "loss", *params,
               *[f"{s}.{d}" for s in SPLITS[::-1] for d in datasets]]
    return pd.DataFrame.from_records(records, columns=columns)


def leaderboard_markdown(frame: pd.DataFrame, metric: str, study_name: Optional[str], top_k: int) -> str:
    """The leaderboard as Markdown: scores x100, the loss column as row titles."""
    lines = [f"# Leaderboard{f' of study `{study_name}`' if study_name else ''}", "",
             f"Top {min(top_k, len(frame))} complete trials by objective value (mean **dev** {metric_title(metric)}); "
             f"scores x100; the test columns are for reading only, never for choosing. Loss: the losses that "
             f"were on (weight > 0), cosine-MSE included.", ""]
    if frame.empty:
        return "\n".join(lines + ["(no trial with a value)", ""])
    score_cols = {c for c in frame.columns if c == "value" or c.startswith(("dev.", "test."))}
    lines.append("| " + " | ".join(frame.columns) + " |")
    lines.append("|" + "|".join("---:" if c in score_cols or c in ("rank", "trial") else "---"
                                for c in frame.columns) + "|")
    for _, rec in frame.iterrows():
        cells = [_cell(col, rec[col], col in score_cols) for col in frame.columns]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _cell(column: str, value: Any, is_score: bool) -> str:
    if is_score:
        return "n/a" if value is None or pd.isna(value) else f"{float(value) * 100:.2f}"
    if column == "loss":
        return title(str(value))
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return "" if value is None else str(value)
