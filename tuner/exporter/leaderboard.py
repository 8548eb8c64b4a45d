"""Non-grid studies (TPE, random, ...): leaderboard, best config, Optuna's own plots.

* :func:`leaderboard_frame` -- the top-k complete trials by objective value (the mean **dev** score),
  with their params and per-dataset dev/test scores.
* :func:`best_finetune` / :func:`best_study_toml` -- the best trial as a ready-to-run
  ``python -m tuner finetune`` command (JSON) and as a one-trial study file (TOML).
* :func:`optuna_plots` -- optimization history, parameter importances, parallel coordinate and
  slice plots via ``optuna.visualization.matplotlib``, drawn from the same trial snapshot as the
  matrix (an in-memory copy of the study), saved as PNG.
"""
from __future__ import annotations

import io
import json
import math
import shlex
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from tuner.combos import ROW_TITLES
from tuner.exporter.matrix import (
    SPLITS,
    mask_url,
    metric_title,
    trial_datasets,
    trial_model,
    trial_row,
    trial_score,
    write_file,
)

OPTUNA_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")


def _value(trial: Any) -> Optional[float]:
    value = trial.value if getattr(trial, "values", None) is None or len(trial.values) == 1 else trial.values[0]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def ranked_trials(trials: Sequence[Any], direction: str = "maximize") -> list[Any]:
    """Trials with a finite value, best first (ties: lower trial number)."""
    sign = -1.0 if str(direction).lower().endswith("maximize") else 1.0
    usable = [t for t in trials if _value(t) is not None]
    return sorted(usable, key=lambda t: (sign * _value(t), t.number))


def _row(trial: Any) -> str:
    try:
        return trial_row(trial)
    except ValueError:
        return str(trial.user_attrs.get("loss", "?"))


def leaderboard_frame(trials: Sequence[Any], direction: str = "maximize", top_k: int = 10,
                      spec: Optional[Mapping[str, Any]] = None) -> pd.DataFrame:
    """Top ``top_k`` trials: rank, trial, value (mean dev), model, loss row, params, ``dev.<d>``/``test.<d>``."""
    top = ranked_trials(trials, direction)[: max(int(top_k), 0)]
    params = sorted({name for t in top for name in t.params if name not in ("model", "loss")})
    datasets: list[str] = []
    for trial in top:
        datasets += [d for d in trial_datasets(trial) if d not in datasets]
    records = []
    for rank, trial in enumerate(top, start=1):
        record: dict[str, Any] = {"rank": rank, "trial": trial.number, "value": _value(trial),
                                  "model": trial_model(trial, spec or {}), "loss": _row(trial)}
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
    title = metric_title(metric)
    lines = [f"# Leaderboard{f' of study `{study_name}`' if study_name else ''}", "",
             f"Top {min(top_k, len(frame))} complete trials by objective value (mean **dev** {title}); "
             f"scores x100; the test columns are for reading only, never for choosing.", ""]
    if frame.empty:
        return "\n".join(lines + ["(no trial with a value)", ""])
    score_cols = {c for c in frame.columns if c == "value" or c.startswith(("dev.", "test."))}
    header = [("loss" if c == "loss" else c) for c in frame.columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" if c in score_cols or c in ("rank", "trial") else "---"
                                for c in frame.columns) + "|")
    for _, rec in frame.iterrows():
        cells = []
        for col in frame.columns:
            value = rec[col]
            if col in score_cols:
                cells.append("n/a" if value is None or pd.isna(value) else f"{float(value) * 100:.2f}")
            elif col == "loss":
                cells.append(ROW_TITLES.get(str(value), str(value)))
            elif isinstance(value, float):
                cells.append("" if pd.isna(value) else f"{value:.4g}")
            else:
                cells.append("" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- best config
REFINE_FACTOR = 1.5      # best_study.toml searches continuous params within [best / 1.5, best * 1.5]
REFINE_TRIALS = 10


def _loss_map(trial: Any, attr: str, prefix: str) -> dict[str, float]:
    mapping = trial.user_attrs.get(attr)
    if not isinstance(mapping, Mapping):
        mapping = {k[len(prefix):]: v for k, v in trial.params.items() if k.startswith(prefix)}
    return {str(k): float(v) for k, v in mapping.items()}


def _fmt_number(value: float) -> str:
    return format(float(value), ".6g")


def _spec(study_attrs: Mapping[str, Any]) -> dict[str, Any]:
    spec = study_attrs.get("spec")
    return dict(spec) if isinstance(spec, Mapping) else {}


def _table(spec: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = spec.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _pooling(trial: Any) -> Optional[str]:
    pooling = trial.params.get("pooling", trial.user_attrs.get("pooling"))
    return None if pooling is None or str(pooling) in ("model default", "None") else str(pooling)


def best_finetune(trial: Any, study_attrs: Mapping[str, Any], study_name: Optional[str] = None) -> dict[str, Any]:
    """The best trial as a ``python -m tuner finetune`` run (``argv`` + ``command``): its model, data,
    weights, taus, pooling and hyperparameters, with the study file's ``[train]``/``[budget]`` settings."""
    spec = _spec(study_attrs)
    train_t, budget = _table(spec, "train"), _table(spec, "budget")
    attrs = trial.user_attrs
    model = trial_model(trial, {"model": spec["models"][0]} if len(spec.get("models") or []) == 1 else {})
    datasets = trial_datasets(trial)
    train = [str(d) for d in attrs.get("train_datasets") or []] or (
        [str(trial.params["dataset"])] if "dataset" in trial.params else datasets)
    evals = [str(d) for d in attrs.get("eval_datasets") or []] or datasets
    weights = _loss_map(trial, "weights", "w_")
    taus = _loss_map(trial, "taus", "tau_")
    pooling = _pooling(trial)
    protocol = attrs.get("protocol", study_attrs.get("protocol", spec.get("protocol")))
    hyper = {
        "lr": trial.params.get("lr", train_t.get("lr")),
        "epochs": trial.params.get("epochs", budget.get("epochs")),
        "batch_size": trial.params.get("batch_size", train_t.get("batch_size")),
        "warmup_ratio": trial.params.get("warmup_ratio", train_t.get("warmup_ratio")),
        "max_seq_length": train_t.get("max_seq_length"),
        "max_steps": budget.get("max_steps"),
        "max_train_examples": budget.get("max_train_examples"),
        "ibn_positive_threshold": train_t.get("ibn_positive_threshold"),
        "precision": train_t.get("precision"),
        "seed": spec.get("seed"),
    }
    config: dict[str, Any] = {
        "study": study_name, "trial": trial.number, "objective": _value(trial),
        "objective_is": "mean dev score over the eval datasets",
        "loss": _row(trial), "model": model, "train": train, "eval": evals, "weights": weights, "taus": taus,
        "pooling": pooling, "protocol": protocol, **{k: v for k, v in hyper.items() if v is not None},
    }
    argv = ["python", "-m", "tuner", "finetune"]
    if model:
        argv += ["--model", str(model)]
    argv += ["--train", ",".join(train)]
    if evals and evals != train:
        argv += ["--eval", ",".join(evals)]
    if weights:
        argv += ["--weights", ",".join(f"{k}={_fmt_number(v)}" for k, v in weights.items())]
    if taus:
        argv += ["--taus", ",".join(f"{k}={_fmt_number(v)}" for k, v in taus.items())]
    if pooling is not None:
        argv += ["--pooling", pooling]
    for name, value in hyper.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", _fmt_number(value) if isinstance(value, float) else str(value)]
    if protocol in ("seed", "standard"):
        argv += ["--protocol", str(protocol)]
    config["scores"] = {split: {d: trial_score(trial, split, d) for d in datasets} for split in SPLITS[::-1]}
    config["params"] = dict(trial.params)
    config["argv"] = argv
    config["command"] = " ".join(shlex.quote(a) for a in argv)
    return config


def _band(value: float, high: Optional[float] = None) -> dict[str, float]:
    low, top = float(value) / REFINE_FACTOR, float(value) * REFINE_FACTOR
    if high is not None:
        top = min(top, high)
    return {"low": float(f"{low:.6g}"), "high": float(f"{top:.6g}")}


def refine_search(trial: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``[search]`` of a study around ``trial``: its loss row (which weights are 0), pooling, epochs and
    batch size fixed; positive weights, taus, lr and warmup searched within x/÷ :data:`REFINE_FACTOR`."""
    search: dict[str, Any] = {}
    for name, value in trial.params.items():
        if name in ("model", "loss", "dataset"):
            continue
        if name == "pooling" or name in ("epochs", "batch_size") or isinstance(value, str):
            search[name] = value
        elif name.startswith("w_") and float(value) <= 0:
            search[name] = 0.0                       # keeps the trial's loss row
        elif name == "warmup_ratio":
            search[name] = _band(value, 0.99) if float(value) > 0 else 0.0
        elif name.startswith(("w_", "tau_")) or name == "lr":
            search[name] = _band(value)
    for name, value in _table(spec, "search").items():   # searched values the trial did not sample
        search.setdefault(name, value)
    if not any(isinstance(v, Mapping) for v in search.values()):
        lr = trial.params.get("lr", _table(spec, "train").get("lr", 2e-5))
        search["lr"] = _band(float(lr))              # a study must search something
    return search


def best_study_toml(trial: Any, study_attrs: Mapping[str, Any], study_name: Optional[str] = None) -> str:
    """A study file (see studies/*.toml) that refines the best trial: the study's own file with its model,
    loss row, pooling and epochs fixed and the continuous params searched close to the best values.

    To re-run exactly the best configuration use ``best_finetune.json``'s command. The storage URL is
    never written (pass ``--storage`` when running it).
    """
    spec = _spec(study_attrs)
    config = best_finetune(trial, study_attrs, study_name)
    name = f"{study_name or spec.get('name') or 'study'}-best"
    doc: dict[str, Any] = {
        "name": name,
        "description": f"Refine trial {trial.number} of study {study_name} (mean dev "
                       f"{_fmt_number(_value(trial) or math.nan)}, loss row {config['loss']})",
        "task": spec.get("task") or study_attrs.get("task") or trial.user_attrs.get("task") or "sts",
        "models": [config["model"]],
        "protocol": config["protocol"] if config["protocol"] in ("seed", "standard") else "standard",
        "sampler": "tpe",
        "pruner": spec.get("pruner", "none"),
        "n_trials": REFINE_TRIALS,
    }
    for key in ("seed", "max_retries", "data_dir"):
        if key in spec:
            doc[key] = spec[key]
    doc["data"] = {"train": config["train"], "eval": config["eval"]}
    doc["budget"] = _table(spec, "budget")
    train_t = _table(spec, "train")
    if config.get("taus"):
        train_t["taus"] = {k: v for k, v in config["taus"].items() if k in ("cosent", "ibn", "angle")}
    if config.get("pooling") and "pooling" not in trial.params:
        train_t["pooling"] = config["pooling"]
    doc["train"] = train_t
    doc["search"] = refine_search(trial, spec)
    if doc["pruner"] != "none" and "eval_every" not in doc["budget"]:
        doc["pruner"] = "none"                       # a pruner needs intermediate dev scores
    doc = {k: v for k, v in doc.items() if v not in (None, {}, [])}
    header = [f"# Refines the best trial ({trial.number}) of study '{study_name}': objective (mean dev score) "
              f"{_fmt_number(_value(trial) or math.nan)}, loss row {config['loss']}.",
              f"# Loss row, pooling and epochs are fixed; weights, taus and lr are searched within x/÷ "
              f"{REFINE_FACTOR:g} of the best values.",
              f"#   python -m tuner optimize --study path/to/{name}.toml --storage <URL>",
              "# Exactly the best configuration, once: the command in best_finetune.json."]
    return "\n".join(header) + "\n" + toml_dumps(_mask_strings(doc))


def _mask_strings(obj: Any) -> Any:
    if isinstance(obj, str):
        return mask_url(obj) if "://" in obj else obj
    if isinstance(obj, Mapping):
        return {k: _mask_strings(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_mask_strings(v) for v in obj]
    return obj


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """A small TOML writer (str, int, float, bool, lists, nested tables); None values are left out."""
    lines: list[str] = []
    _toml_table(doc, [], lines)
    return "\n".join(lines).strip() + "\n"


def _toml_key(key: str) -> str:
    key = str(key)
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _toml_table(doc: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    tables = []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables:
        lines += ["", "[" + ".".join(_toml_key(k) for k in [*path, key]) + "]"]
        _toml_table(value, [*path, key], lines)


# --------------------------------------------------------------------------- Optuna's plots
def snapshot_study(trials: Sequence[Any], directions: Sequence[Any], study_name: Optional[str]) -> Any:
    """An in-memory study holding exactly ``trials`` (so Optuna's plots see the export's snapshot)."""
    import optuna

    study = optuna.create_study(directions=list(directions), study_name=study_name)
    study.add_trials(list(trials))
    return study


def optuna_plots(trials: Sequence[Any], directions: Sequence[Any], out_dir: Path | str,
                 study_name: Optional[str] = None, target_name: str = "Objective Value") -> tuple[list[Path], dict[str, str]]:
    """PNG files ``<out_dir>/plots/optuna_<name>.png``; returns (written, {plot: why it was skipped})."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    written: list[Path] = []
    skipped: dict[str, str] = {}
    if len(directions) != 1:
        return written, {name: "multi-objective study" for name in OPTUNA_PLOTS}
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = snapshot_study(trials, directions, study_name)
        varied = [name for name in sorted({p for t in trials for p in t.params})
                  if len({json.dumps(t.params.get(name), default=str) for t in trials if name in t.params}) > 1]
        builders = {
            "optimization_history": lambda: ovm.plot_optimization_history(study, target_name=target_name),
            "param_importances": lambda: ovm.plot_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0),
                target_name=target_name),
            "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, params=varied or None,
                                                                        target_name=target_name),
            "slice": lambda: ovm.plot_slice(study, params=varied or None, target_name=target_name),
        }
        for name, build in builders.items():
            if name in ("param_importances", "parallel_coordinate", "slice") and len(trials) < 2:
                skipped[name] = "needs at least 2 complete trials"
                continue
            if name in ("param_importances", "parallel_coordinate", "slice") and not varied:
                skipped[name] = "no parameter takes more than one value"
                continue
            fig = None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    axes = build()
                    first = np.atleast_1d(axes).ravel()[0]
                    fig = first.figure
                    n = len(np.atleast_1d(axes).ravel())
                    size = {"optimization_history": (9, 5), "param_importances": (9, 0.45 * len(varied) + 2.5),
                            "parallel_coordinate": (max(10, 1.4 * len(varied) + 3), 6),
                            "slice": (max(8, 3.3 * n), 4.6)}[name]
                    fig.set_size_inches(*size)
                    if name == "slice":
                        for ax in np.atleast_1d(axes).ravel():
                            for label in ax.get_xticklabels():
                                label.set_rotation(30)
                                label.set_ha("right")
                    fig.suptitle(f"{f'study {study_name}: ' if study_name else ''}{target_name}")
                    # No constrained layout: it fails on the parallel-coordinate colorbar; the tight bbox does.
                    buffer = io.BytesIO()
                    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
                written.append(write_file(Path(out_dir) / "plots" / f"optuna_{name}.png", buffer.getvalue()))
            except Exception as exc:  # noqa: BLE001 - one failing Optuna plot must not stop the export
                if type(exc).__name__ == "TunerError":
                    raise
                skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
            finally:
                if fig is not None:
                    plt.close(fig)
    finally:
        optuna.logging.set_verbosity(previous)
    return written, skipped
