"""Completed trials -> the results matrix ``(models, rows, datasets)``.

The matrix is built from one snapshot: a list of COMPLETE trials read once
(``study.get_trials(deepcopy=False, states=(COMPLETE,))``) plus the study's user attributes,
so an export stays consistent while workers keep writing (see docs/trial-record.md).

* A trial's **row** is the set of losses that were on, cosine-MSE included (``"<loss>+<loss>"``),
  read from its recorded run config (:func:`tuner.exporter.trials.trial_row`, which also reads
  studies written before configs were recorded).
* **Which rows, in which order** (:func:`tuner.exporter.rows.matrix_rows`): the seed's 9 rows in the
  seed's order (zero-shot, cosine-MSE alone, then the seven combinations of the seed's three other
  losses), followed by every other combination that has a complete trial, by number of losses and
  registry order. A study whose trials all fall in the seed's rows -- every seed grid -- has exactly
  the seed's 9-row layout; with the four built-in losses a search that switches losses on and off
  has at most 16 rows (zero-shot + 15 non-empty combinations). ``matrix.json`` states the rule
  (``rows_rule``) and lists the rows (``losses``) and their titles.
* Its **model**: user attr ``model``, else param ``model``, else the recorded config's model.
* Its **datasets**: grid param ``dataset`` (train = eval for that cell), else the keys of its
  ``scores.dev.*`` / ``scores.test.*`` user attrs. Task ``nli`` (train on NLI, score STS): always the
  score keys, so the columns are the STS eval sets, and a cell's dev ranking is the trial's value
  (STS-B dev) except in the STS-B column.
* A cell's **value**: ``scores.<split>.<dataset>`` of the chosen trial; NaN when no complete
  trial has it.
* When several trials fill one cell (several poolings, taus, weights, ...), the one with the highest
  **dev** score ``scores.dev.<dataset>`` is chosen (falling back to the trial's value, the mean
  dev score, when that attr is missing; recorded). Test scores never take part in the choice.
* The zero-shot row comes from the study user attrs ``zero_shot.<model>.<dataset>.<split>``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from tuner.errors import TunerError
from tuner.stats import seed_summary
from tuner.exporter.cells import config_items, group_configs
from tuner.exporter.files import library_versions, mask_url
from tuner.exporter.items import decode_items, eval_rows_key, gold_key, overlap_key, zero_shot_items_key
from tuner.exporter.rows import ZERO_SHOT, matrix_rows, rows_rule, title
from tuner.exporter.significance import cells_json, significance_of
from tuner.exporter.trials import (
    SPLITS,
    axis_order,
    finite,
    is_grid_study,
    study_metric,
    study_protocol,
    trial_datasets,
    trial_model,
    trial_row,
    trial_score,
)

SEEDS_RULE = ("a configuration run with several seeds (grid cells that differ only in the param seed, or a trial's "
              "scores_by_seed) fills its cell with the mean over the seeds; cells_detail gives n_seeds, the sample "
              "std and a two-sided 95% Student-t interval (tuner.stats.seed_summary) and the trials behind it")
MAX_LISTED_CANDIDATES = 5  # per cell in matrix.json (best dev first); n_candidates gives the full count
SELECTION_RULE = ("when several complete trials fill one (model, loss, dataset) cell, the trial with the highest "
                  "dev score scores.dev.<dataset> is kept (ties: lowest trial number); a trial without that attr is "
                  "ranked by its objective value (the mean dev score); test scores are never used to choose")

Cell = tuple[int, int, int]
Placed = tuple[Any, str, str, list[str]]         # (trial, model, row, datasets)


@dataclass
class Matrix:
    """The results matrix and everything needed to explain each cell."""

    values: np.ndarray                 # (models, rows, datasets), scores of ``split``, NaN = no complete trial
    dev: np.ndarray                    # dev score of the chosen trial (or zero-shot attr) per cell
    test: np.ndarray                   # test score of the chosen trial (or zero-shot attr) per cell
    trials: np.ndarray                 # trial number behind each cell, -1 = none (zero-shot row: study attr)
    models: tuple[str, ...]
    rows: tuple[str, ...]
    datasets: tuple[str, ...]
    split: str
    metric: str
    protocol: str
    study_name: Optional[str] = None
    is_grid: bool = False
    n_trials: int = 0
    params: dict[Cell, dict[str, Any]] = field(default_factory=dict)
    choices: list[dict[str, Any]] = field(default_factory=list)     # cells with several candidates
    fallbacks: list[dict[str, Any]] = field(default_factory=list)   # cells ranked by trial value
    skipped: list[dict[str, Any]] = field(default_factory=list)      # trials that fit no cell
    run_versions: list[dict[str, Any]] = field(default_factory=list)
    n_seeds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))   # seeds behind each cell
    std: np.ndarray = field(default_factory=lambda: np.zeros(0))                     # std over seeds, NaN if < 2
    seeds: dict[Cell, dict[str, Any]] = field(default_factory=dict)   # trials, seeds, seed_summary per cell
    items: dict[Cell, tuple] = field(default_factory=dict)            # (n, idx, per-item values) per cell
    gold: dict[str, tuple] = field(default_factory=dict)              # dataset -> (n, idx, gold scores), STS
    overlap: dict[str, Any] = field(default_factory=dict)             # dataset -> recorded overlap figures
    eval_rows: dict[str, Any] = field(default_factory=dict)           # dataset -> scored rows vs the full files
    significance: Any = None                                          # tuner.exporter.significance.Significance

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.values.shape)  # type: ignore[return-value]

    @property
    def filled(self) -> int:
        return int(np.isfinite(self.values).sum())

    def labels(self) -> dict[str, Any]:
        """What :func:`tuner.exporter.plots.plot_matrix` needs to title and label the figures."""
        return {"models": list(self.models), "losses": list(self.rows), "datasets": list(self.datasets),
                "metric": self.metric, "split": self.split, "protocol": self.protocol, "study": self.study_name}

    def to_json(self, storage_url: Optional[str] = None) -> dict[str, Any]:
        """The content of ``matrix.json``."""
        return {
            "study": self.study_name,
            "storage": mask_url(storage_url),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "file": "matrix.npy",
            "shape": list(self.shape),
            "axes": ["models", "losses", "datasets"],
            "models": list(self.models),
            "losses": list(self.rows),
            "loss_titles": [title(r) for r in self.rows],
            "rows_rule": rows_rule(),
            "datasets": list(self.datasets),
            "metric": self.metric,
            "split": self.split,
            "protocol": self.protocol,
            "scale": "0..1 (tables and plots show x100)",
            "missing": "NaN where a cell has no complete trial",
            "sampler": "grid" if self.is_grid else "not grid",
            "n_complete_trials": self.n_trials,
            "filled_cells": self.filled,
            "cells": int(self.values.size),
            "trials": [[[None if n < 0 else int(n) for n in row] for row in model] for model in self.trials],
            "trials_note": f"trial number behind each cell (models x losses x datasets); the {ZERO_SHOT} row comes "
                           f"from the study user attrs {ZERO_SHOT}.<model>.<dataset>.<split>, not from a trial",
            "selection": {"by": "dev", "rule": SELECTION_RULE, "cells_with_several_trials": self.choices,
                          "cells_ranked_by_trial_value": self.fallbacks},
            "skipped_trials": self.skipped,
            "seeds_rule": SEEDS_RULE,
            "cells_detail": cells_json(self),
            "significance": self.significance.to_json() if self.significance is not None else None,
            "overlap": {name: self.overlap.get(name) for name in self.datasets},
            "overlap_note": "per dataset, study attr overlap.<dataset>: the share of the scored dev/test rows "
                            "whose sentences occur in the protocol's train split (null: not recorded, a study "
                            "run before it was)",
            "eval_rows": {name: self.eval_rows.get(name) for name in self.datasets},
            "eval_rows_note": "per dataset, study attr eval_rows.<dataset>: per split the scored rows, the full "
                              "file's rows, and a model-free figure on both (tuner.data.sampling; null: a study "
                              "run before it was recorded)",
            "versions": library_versions(),
            "run_versions": self.run_versions,
        }


def build_matrix(trials: Iterable[Any], study_attrs: Optional[Mapping[str, Any]] = None, split: str = "test", *,
                 study_name: Optional[str] = None, models: Optional[Sequence[str]] = None,
                 datasets: Optional[Sequence[str]] = None) -> Matrix:
    """Build the matrix from a snapshot of COMPLETE trials (FrozenTrial-like objects).

    ``models`` / ``datasets`` fix the axes (and their order); by default they are the grid's declared
    choices followed by whatever else the trials name, in trial-number order. Rows: module docstring.
    """
    if split not in SPLITS:
        raise TunerError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    attrs = dict(study_attrs or {})
    trials = sorted(trials, key=lambda t: t.number)
    placed, skipped = _place(trials)
    model_axis = list(models) if models is not None else axis_order(trials, "model")
    # task nli: the grid's dataset axis is the NLI training set; the columns are the STS sets it is scored on
    nli = attrs.get("task") == "nli" or any(t.user_attrs.get("task") == "nli" for t in trials)
    data_axis = list(datasets) if datasets is not None else ([] if nli else axis_order(trials, "dataset"))
    for _, model, _, names in placed:
        if models is None and model not in model_axis:
            model_axis.append(model)
        if datasets is None:
            data_axis += [d for d in names if d not in data_axis]
    rows = matrix_rows(row for _, _, row, _ in placed)
    shape = (len(model_axis), len(rows), len(data_axis))
    matrix = Matrix(values=np.full(shape, np.nan), dev=np.full(shape, np.nan), test=np.full(shape, np.nan),
                    trials=np.full(shape, -1, dtype=np.int64), models=tuple(model_axis), rows=rows,
                    datasets=tuple(data_axis), split=split, metric=study_metric(trials, attrs),
                    protocol=study_protocol(trials, attrs), study_name=study_name,
                    is_grid=is_grid_study(trials, attrs), n_trials=len(trials), skipped=skipped)
    matrix.n_seeds = np.zeros(shape, dtype=np.int64)
    matrix.std = np.full(shape, np.nan)
    chosen = _fill_trial_cells(matrix, placed)
    _fill_zero_shot(matrix, attrs)
    for name in matrix.datasets:
        found = decode_items(attrs.get(gold_key(name, split)))
        if found is not None:
            matrix.gold[name] = found
        if isinstance(attrs.get(overlap_key(name)), Mapping):
            matrix.overlap[name] = dict(attrs[overlap_key(name)])
        if isinstance(attrs.get(eval_rows_key(name)), Mapping):
            matrix.eval_rows[name] = dict(attrs[eval_rows_key(name)])
    matrix.significance = significance_of(matrix)
    seen: set[str] = set()
    for trial in chosen:
        versions = trial.user_attrs.get("versions")
        if isinstance(versions, Mapping):
            text = json.dumps(versions, sort_keys=True, default=str)
            if text not in seen:
                seen.add(text)
                matrix.run_versions.append(dict(versions))
    return matrix


def _place(trials: Sequence[Any]) -> tuple[list[Placed], list[dict[str, Any]]]:
    """(trials that fit a cell with their model, row and datasets; the others with the reason)."""
    placed: list[Placed] = []
    skipped: list[dict[str, Any]] = []
    for trial in trials:
        try:
            row = trial_row(trial)
        except ValueError as exc:
            skipped.append({"trial": trial.number, "reason": str(exc)})
            continue
        model = trial_model(trial)
        if model is None:
            skipped.append({"trial": trial.number, "reason": "no model (user attr or param 'model')"})
            continue
        names = trial_datasets(trial)
        if not names:
            skipped.append({"trial": trial.number, "reason": "no scores.<split>.<dataset> user attrs"})
            continue
        placed.append((trial, model, row, names))
    return placed, skipped


def _fill_trial_cells(matrix: Matrix, placed: Sequence[Placed]) -> list[Any]:
    """Fill every cell that has candidates with the dev-best one; returns the chosen trials."""
    m_index = {m: i for i, m in enumerate(matrix.models)}
    r_index = {r: i for i, r in enumerate(matrix.rows)}
    d_index = {d: i for i, d in enumerate(matrix.datasets)}
    split = matrix.split
    candidates: dict[Cell, list[Any]] = {}     # trials with a finite score for the requested split
    names_of: dict[int, list[str]] = {}
    for trial, model, row, names in placed:
        names_of[trial.number] = names
        if model not in m_index:
            continue
        for name in names:
            if name in d_index and _cell_value(trial, split, name, names) is not None:
                candidates.setdefault((m_index[model], r_index[row], d_index[name]), []).append(trial)

    chosen: list[Any] = []
    for (mi, ri, di), cands in sorted(candidates.items()):
        name = matrix.datasets[di]
        fallback = {t.number: _cell_value(t, "dev", name, names_of[t.number]) for t in cands}
        configs = group_configs(cands, name, fallback)
        ranked = sorted(configs, key=lambda c: (-_config_dev(c), c.trials[0].number))
        best = ranked[0]
        first = best.trials[0]
        source = _dev_key(first, name, names_of[first.number])[1]
        summary = seed_summary([v for v in best.scores[split] if v is not None])
        matrix.values[mi, ri, di] = summary["mean"]
        matrix.dev[mi, ri, di] = _nan_if_none(best.mean("dev"))
        matrix.test[mi, ri, di] = _nan_if_none(best.mean("test"))
        matrix.trials[mi, ri, di] = first.number
        matrix.n_seeds[mi, ri, di] = summary["n"]
        matrix.std[mi, ri, di] = _nan_if_none(summary["std"])
        matrix.seeds[(mi, ri, di)] = {"trials": best.numbers, "seeds": best.seeds, "summary": summary}
        matrix.params[(mi, ri, di)] = {k: v for k, v in first.params.items() if k != "seed"}
        found = config_items(best, split, name)
        if found is not None:
            matrix.items[(mi, ri, di)] = found
        chosen += best.trials
        cell = {"model": matrix.models[mi], "loss": matrix.rows[ri], "dataset": name}
        if len(ranked) > 1:
            top = [{"trial": c.trials[0].number, "trials": c.numbers, "dev": _round(_config_dev(c))}
                   for c in ranked[:MAX_LISTED_CANDIDATES]]
            matrix.choices.append({**cell, "chosen": first.number, "chosen_trials": best.numbers, "by": source,
                                   "n_candidates": len(ranked), "candidates": top})
        if source != f"scores.dev.{name}":
            matrix.fallbacks.append({**cell, "trial": first.number, "by": source,
                                     "why": f"trial {first.number} has no scores.dev.{name} user attr"})
    return chosen


def _config_dev(config: Any) -> float:
    """A configuration's ranking score: its mean dev score over seeds (never test)."""
    value = config.mean("dev")
    return value if value is not None else -math.inf


def _fill_zero_shot(matrix: Matrix, attrs: Mapping[str, Any]) -> None:
    """The zero-shot row: the study-level scores (they win over any trial labelled zero-shot)."""
    zero = matrix.rows.index(ZERO_SHOT)
    for mi, model in enumerate(matrix.models):
        for di, name in enumerate(matrix.datasets):
            by_split = {s: finite(attrs.get(f"{ZERO_SHOT}.{model}.{name}.{s}")) for s in SPLITS}
            if by_split[matrix.split] is None:
                continue
            matrix.values[mi, zero, di] = by_split[matrix.split]
            matrix.dev[mi, zero, di] = _nan_if_none(by_split["dev"])
            matrix.test[mi, zero, di] = _nan_if_none(by_split["test"])
            matrix.trials[mi, zero, di] = -1
            matrix.n_seeds[mi, zero, di] = 1
            matrix.params.pop((mi, zero, di), None)
            found = decode_items(attrs.get(zero_shot_items_key(model, name, matrix.split)))
            if found is not None:
                matrix.items[(mi, zero, di)] = found
            else:
                matrix.items.pop((mi, zero, di), None)


def _cell_value(trial: Any, split: str, dataset: str, names: Sequence[str]) -> Optional[float]:
    value = trial_score(trial, split, dataset)
    if value is None and split == "dev" and list(names) == [dataset]:
        value = finite(trial.value)  # one eval dataset: the objective is that dataset's dev score
    return value


def _round(value: float) -> Optional[float]:
    return None if finite(value) is None else round(float(value), 6)


def _nan_if_none(value: Optional[float]) -> float:
    return np.nan if value is None else float(value)


def _dev_key(trial: Any, dataset: str, names: Sequence[str]) -> tuple[float, str]:
    """(ranking score, where it came from); never a test score."""
    value = trial_score(trial, "dev", dataset)
    if value is not None:
        return value, f"scores.dev.{dataset}"
    value = finite(trial.value)
    return (value if value is not None else -math.inf), "trial value (mean dev score)"
