"""Completed trials -> the results matrix ``(models, len(LOSS_ROWS), datasets)``.

The matrix is built from one snapshot: a list of COMPLETE trials read once
(``study.get_trials(deepcopy=False, states=(COMPLETE,))``) plus the study's user attributes,
so an export stays consistent while workers keep writing (see docs/trial-record.md).

* A trial's **row**: user attr ``loss`` (or grid param ``loss``), else
  :func:`tuner.combos.row_of_weights` of user attr ``weights`` or the ``w_*`` params.
* Its **model**: user attr ``model``, else param ``model``, else the study spec's ``model``.
* Its **datasets**: grid param ``dataset`` (train = eval for that cell), else the keys of its
  ``scores.dev.*`` / ``scores.test.*`` user attrs.
* A cell's **value**: ``scores.<split>.<dataset>`` of the chosen trial; NaN when no complete
  trial has it.
* When several trials fill one cell (several poolings, taus, ...), the one with the highest
  **dev** score ``scores.dev.<dataset>`` is chosen (falling back to the trial's value, the mean
  dev score, when that attr is missing; recorded). Test scores never take part in the choice.
* Row ``zero_shot`` comes from the study user attrs ``zero_shot.<model>.<dataset>.<split>``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from tuner.combos import LOSS_ROWS, ROW_TITLES, row_of_weights
from tuner.errors import TunerError
from tuner.storage import mask_text
from tuner.storage import mask_url as storage_mask_url

SPLITS = ("test", "dev")
MAX_LISTED_CANDIDATES = 5  # per cell in matrix.json (best dev first); n_candidates gives the full count
SELECTION_RULE = ("when several complete trials fill one (model, loss, dataset) cell, the trial with the highest "
                  "dev score scores.dev.<dataset> is kept (ties: lowest trial number); a trial without that attr is "
                  "ranked by its objective value (the mean dev score); test scores are never used to choose")
METRIC_TITLES = {"spearman": "Spearman", "accuracy": "Accuracy", "acc": "Accuracy"}
ROW_ALIASES = {**{r: r for r in LOSS_ROWS}, **{t.lower(): r for r, t in ROW_TITLES.items()},
                "cosine_mse": "cos_mse", "in_batch_negatives": "ibn"}


# --------------------------------------------------------------------------- storage URL masking
def mask_url(url: Optional[str]) -> Optional[str]:
    """:func:`tuner.storage.mask_url` that lets ``None`` through."""
    return None if url is None else storage_mask_url(str(url))


def scrub(obj: Any) -> Any:
    """Mask every URL-looking string in a JSON-able structure (no password is ever saved)."""
    if isinstance(obj, str):
        return mask_text(obj) if "://" in obj or "password=" in obj.lower() else obj
    if isinstance(obj, Mapping):
        return {str(k): scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- file output
def write_file(path: Path, data: bytes | str) -> Path:
    """Write ``data`` atomically (temp file + rename); any OS error becomes a one-line TunerError."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs follow the umask
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise TunerError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose a writable "
                         f"--out folder") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` and prove it is writable before anything is read or written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TunerError(f"output folder {out_dir} is a file; give --out a folder path")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tuner-write-check.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TunerError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}; "
                         f"choose a writable --out folder") from None
    return out_dir


def json_dumps(payload: Any) -> str:
    """Strict JSON (NaN/inf -> null, numpy scalars -> Python) with passwords masked."""
    return json.dumps(scrub(_jsonable(payload)), indent=2, allow_nan=False) + "\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


# --------------------------------------------------------------------------- reading trials
def _finite(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def trial_row(trial: Any) -> str:
    """The loss row of a trial (see module docstring); ValueError for an unknown row name."""
    loss = trial.user_attrs.get("loss", trial.params.get("loss"))
    if loss is not None:
        row = ROW_ALIASES.get(str(loss).strip().lower())
        if row is None:
            raise ValueError(f"unknown loss row {loss!r}")
        return row
    weights = trial.user_attrs.get("weights")
    if not isinstance(weights, Mapping):
        weights = {k[2:]: v for k, v in trial.params.items() if k.startswith("w_")}
    return row_of_weights(weights)


def trial_model(trial: Any, spec: Mapping[str, Any]) -> Optional[str]:
    model = trial.user_attrs.get("model", trial.params.get("model"))
    if model is None and isinstance(spec.get("model"), str):
        model = spec["model"]
    return None if model is None else str(model)


def trial_datasets(trial: Any) -> list[str]:
    """Grid cell: ``[param dataset]``; otherwise the datasets of its score attrs (eval order first)."""
    if "dataset" in trial.params:
        return [str(trial.params["dataset"])]
    names: list[str] = [str(d) for d in trial.user_attrs.get("eval_datasets") or [] if isinstance(d, str)]
    for key in trial.user_attrs:
        for split in SPLITS:
            prefix = f"scores.{split}."
            if key.startswith(prefix) and key[len(prefix):] not in names:
                names.append(key[len(prefix):])
    # An eval dataset without any score is not a dataset this trial contributes to.
    return [d for d in names if any(f"scores.{s}.{d}" in trial.user_attrs for s in SPLITS)]


def trial_score(trial: Any, split: str, dataset: str) -> Optional[float]:
    return _finite(trial.user_attrs.get(f"scores.{split}.{dataset}"))


def is_grid_study(trials: Sequence[Any], study_attrs: Mapping[str, Any]) -> bool:
    """A grid study: the study's ``sampler`` attr / spec says grid, or Optuna's GridSampler tagged the trials."""
    if isinstance(study_attrs.get("sampler"), str):
        return study_attrs["sampler"].lower() == "grid"
    spec = study_attrs.get("spec")
    if isinstance(spec, Mapping) and "sampler" in spec:
        sampler = spec["sampler"]
        if isinstance(sampler, Mapping):
            sampler = sampler.get("name", sampler.get("type", sampler.get("kind", "")))
        return "grid" in str(sampler).lower()
    return any("grid_id" in t.system_attrs for t in trials)


def _axis_order(trials: Sequence[Any], param: str) -> list[str]:
    """Declared choices of a grid/categorical param (GridSampler search space first), in study order."""
    order: list[str] = []
    for trial in trials:
        space = trial.system_attrs.get("search_space")
        if isinstance(space, Mapping) and param in space:
            order += [str(v) for v in space[param] if str(v) not in order]
        dist = trial.distributions.get(param)
        choices = getattr(dist, "choices", None)
        if choices is not None:
            order += [str(v) for v in choices if str(v) not in order]
    return order


def _metric(trials: Sequence[Any], study_attrs: Mapping[str, Any]) -> str:
    metric = study_attrs.get("metric")
    if metric is None:
        seen = {str(t.user_attrs["metric"]) for t in trials if "metric" in t.user_attrs}
        metric = seen.pop() if len(seen) == 1 else ("mixed" if seen else None)
    if metric is None:
        task = study_attrs.get("task") or next((t.user_attrs["task"] for t in trials if "task" in t.user_attrs), None)
        metric = {"sts": "spearman", "classification": "accuracy"}.get(str(task), "score")
    return str(metric)


def _protocol(trials: Sequence[Any], study_attrs: Mapping[str, Any]) -> str:
    protocol = study_attrs.get("protocol")
    if protocol is None:
        seen = {str(t.user_attrs["protocol"]) for t in trials if "protocol" in t.user_attrs}
        protocol = seen.pop() if len(seen) == 1 else ("mixed" if seen else "unknown")
    return str(protocol)


def metric_title(metric: str) -> str:
    return METRIC_TITLES.get(str(metric).lower(), str(metric))


# --------------------------------------------------------------------------- the matrix
@dataclass
class Matrix:
    """The results matrix and everything needed to explain each cell."""

    values: np.ndarray                 # (models, rows, datasets), scores of ``split``, NaN = no complete trial
    dev: np.ndarray                    # dev score of the chosen trial (or zero-shot attr) per cell
    test: np.ndarray                   # test score of the chosen trial (or zero-shot attr) per cell
    trials: np.ndarray                 # trial number behind each cell, -1 = none (zero_shot row: study attr)
    models: tuple[str, ...]
    rows: tuple[str, ...]
    datasets: tuple[str, ...]
    split: str
    metric: str
    protocol: str
    study_name: Optional[str] = None
    is_grid: bool = False
    n_trials: int = 0
    params: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)
    choices: list[dict[str, Any]] = field(default_factory=list)     # cells with several candidates
    fallbacks: list[dict[str, Any]] = field(default_factory=list)   # cells ranked by trial value
    skipped: list[dict[str, Any]] = field(default_factory=list)      # trials that fit no cell
    run_versions: list[dict[str, Any]] = field(default_factory=list)

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
            "loss_titles": [ROW_TITLES.get(r, r) for r in self.rows],
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
            "trials_note": "trial number behind each cell (models x losses x datasets); the zero_shot row comes "
                           "from the study user attrs zero_shot.<model>.<dataset>.<split>, not from a trial",
            "selection": {"by": "dev", "rule": SELECTION_RULE, "cells_with_several_trials": self.choices,
                          "cells_ranked_by_trial_value": self.fallbacks},
            "skipped_trials": self.skipped,
            "versions": library_versions(),
            "run_versions": self.run_versions,
        }


def build_matrix(trials: Iterable[Any], study_attrs: Optional[Mapping[str, Any]] = None, split: str = "test", *,
                 study_name: Optional[str] = None, models: Optional[Sequence[str]] = None,
                 datasets: Optional[Sequence[str]] = None) -> Matrix:
    """Build the matrix from a snapshot of COMPLETE trials (FrozenTrial-like objects).

    ``models`` / ``datasets`` fix the axes (and their order); by default they are the grid's declared
    choices followed by whatever else the trials name, in trial-number order.
    """
    if split not in SPLITS:
        raise TunerError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    attrs = dict(study_attrs or {})
    spec = attrs.get("spec") if isinstance(attrs.get("spec"), Mapping) else {}
    trials = sorted(trials, key=lambda t: t.number)

    placed: list[tuple[Any, str, str, list[str]]] = []
    skipped: list[dict[str, Any]] = []
    for trial in trials:
        try:
            row = trial_row(trial)
        except ValueError as exc:
            skipped.append({"trial": trial.number, "reason": str(exc)})
            continue
        model = trial_model(trial, spec)
        if model is None:
            skipped.append({"trial": trial.number, "reason": "no model (user attr or param 'model')"})
            continue
        names = trial_datasets(trial)
        if not names:
            skipped.append({"trial": trial.number, "reason": "no scores.<split>.<dataset> user attrs"})
            continue
        placed.append((trial, model, row, names))

    model_axis = list(models) if models is not None else _axis_order(trials, "model")
    data_axis = list(datasets) if datasets is not None else _axis_order(trials, "dataset")
    for _, model, _, names in placed:
        if models is None and model not in model_axis:
            model_axis.append(model)
        if datasets is None:
            data_axis += [d for d in names if d not in data_axis]
    rows = LOSS_ROWS
    shape = (len(model_axis), len(rows), len(data_axis))
    m_index = {m: i for i, m in enumerate(model_axis)}
    d_index = {d: i for i, d in enumerate(data_axis)}
    r_index = {r: i for i, r in enumerate(rows)}

    # Candidates per cell: trials with a finite score for the requested split.
    candidates: dict[tuple[int, int, int], list[Any]] = {}
    for trial, model, row, names in placed:
        if model not in m_index:
            continue
        for name in names:
            if name in d_index and _cell_value(trial, split, name, names) is not None:
                candidates.setdefault((m_index[model], r_index[row], d_index[name]), []).append(trial)

    values = np.full(shape, np.nan)
    dev = np.full(shape, np.nan)
    test = np.full(shape, np.nan)
    numbers = np.full(shape, -1, dtype=np.int64)
    matrix = Matrix(values=values, dev=dev, test=test, trials=numbers, models=tuple(model_axis), rows=tuple(rows),
                    datasets=tuple(data_axis), split=split, metric=_metric(trials, attrs),
                    protocol=_protocol(trials, attrs), study_name=study_name, is_grid=is_grid_study(trials, attrs),
                    n_trials=len(trials), skipped=skipped)

    chosen_trials: list[Any] = []
    names_of = {t.number: n for t, _, _, n in placed}
    for (mi, ri, di), cands in sorted(candidates.items()):
        name = data_axis[di]
        ranked = sorted(cands, key=lambda t: (-_dev_key(t, name, names_of[t.number])[0], t.number))
        best = ranked[0]
        _, source = _dev_key(best, name, names_of[best.number])
        values[mi, ri, di] = _cell_value(best, split, name, names_of[best.number])
        dev[mi, ri, di] = _nan_if_none(_cell_value(best, "dev", name, names_of[best.number]))
        test[mi, ri, di] = _nan_if_none(trial_score(best, "test", name))
        numbers[mi, ri, di] = best.number
        matrix.params[(mi, ri, di)] = dict(best.params)
        chosen_trials.append(best)
        cell = {"model": model_axis[mi], "loss": rows[ri], "dataset": name}
        if len(ranked) > 1:
            top = [{"trial": t.number, "dev": _round(_dev_key(t, name, names_of[t.number])[0])}
                   for t in ranked[:MAX_LISTED_CANDIDATES]]
            matrix.choices.append({**cell, "chosen": best.number, "by": source, "n_candidates": len(ranked),
                                   "candidates": top})
        if source != f"scores.dev.{name}":
            matrix.fallbacks.append({**cell, "trial": best.number, "by": source,
                                     "why": f"trial {best.number} has no scores.dev.{name} user attr"})

    # Row zero_shot: the study-level "without fine-tuning" scores (they win over any trial tagged zero_shot).
    zero = r_index["zero_shot"]
    for mi, model in enumerate(model_axis):
        for di, name in enumerate(data_axis):
            by_split = {s: _finite(attrs.get(f"zero_shot.{model}.{name}.{s}")) for s in SPLITS}
            if by_split[split] is None:
                continue
            values[mi, zero, di] = by_split[split]
            dev[mi, zero, di] = _nan_if_none(by_split["dev"])
            test[mi, zero, di] = _nan_if_none(by_split["test"])
            numbers[mi, zero, di] = -1
            matrix.params.pop((mi, zero, di), None)

    seen: set[str] = set()
    for trial in chosen_trials:
        versions = trial.user_attrs.get("versions")
        if isinstance(versions, Mapping):
            text = json.dumps(versions, sort_keys=True, default=str)
            if text not in seen:
                seen.add(text)
                matrix.run_versions.append(dict(versions))
    return matrix


def _cell_value(trial: Any, split: str, dataset: str, names: Sequence[str]) -> Optional[float]:
    value = trial_score(trial, split, dataset)
    if value is None and split == "dev" and list(names) == [dataset]:
        value = _finite(trial.value)  # one eval dataset: the objective is that dataset's dev score
    return value


def _round(value: float) -> Optional[float]:
    return None if _finite(value) is None else round(float(value), 6)


def _nan_if_none(value: Optional[float]) -> float:
    return np.nan if value is None else float(value)


def _dev_key(trial: Any, dataset: str, names: Sequence[str]) -> tuple[float, str]:
    """(ranking score, where it came from); never a test score."""
    value = trial_score(trial, "dev", dataset)
    if value is not None:
        return value, f"scores.dev.{dataset}"
    value = _finite(trial.value)
    return (value if value is not None else -math.inf), "trial value (mean dev score)"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("tuner", "optuna", "numpy", "pandas", "matplotlib", "sqlalchemy", "torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
