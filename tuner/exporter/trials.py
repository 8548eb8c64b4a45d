"""Reading what a trial recorded (see docs/trial-record.md): its run config, row, model, datasets, scores.

* A trial's **run config**: user attr ``config`` (:meth:`tuner.config.RunConfig.to_dict`), loaded
  with :meth:`~tuner.config.RunConfig.from_dict` (``strict=False``: keys of a newer tuner are ignored).
* Its **row** (:func:`trial_row`), first that applies:

  1. ``config`` -> :attr:`RunConfig.loss <tuner.config.RunConfig.loss>` (the losses that were on,
     cosine-MSE included);
  2. legacy user attr ``weights`` -> :func:`~tuner.losses.registry.row_of_weights` (exact, cosine-MSE
     included; it comes before ``loss`` because trials written before the registry recorded a
     ``loss`` that left cosine-MSE out);
  3. user attr ``loss``, grid param ``loss`` or search param ``losses`` (a row label or title, any
     registered spelling);
  4. the params: ``use_<loss>`` (on/off) and ``w_<loss>`` (weight) -> ``row_of_weights``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from tuner.config import RunConfig
from tuner.errors import TunerError
from tuner.losses.registry import canonical_row, param_loss, row_of_weights

SPLITS = ("test", "dev")
METRIC_TITLES = {"spearman": "Spearman", "accuracy": "Accuracy", "acc": "Accuracy"}


def finite(value: Any) -> Optional[float]:
    """``value`` as a finite float, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def trial_config(trial: Any) -> Optional[RunConfig]:
    """The trial's recorded :class:`RunConfig`; None for a trial written before configs were recorded.

    ValueError (one line) when the record is there but does not load (e.g. a loss no longer registered).
    """
    raw = trial.user_attrs.get("config")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"user attr 'config' is {type(raw).__name__}, not a run config")
    try:
        return RunConfig.from_dict(raw, strict=False)
    except (TunerError, TypeError, ValueError) as exc:
        raise ValueError(f"recorded config does not load: {exc}") from None


def trial_row(trial: Any) -> str:
    """The trial's row (see the module docstring); ValueError (one line) when it has none."""
    config = trial_config(trial)
    if config is not None:
        return config.loss
    weights = trial.user_attrs.get("weights")
    if isinstance(weights, Mapping):
        return _row_of(weights, "user attr 'weights'")
    label = trial.user_attrs.get("loss", trial.params.get("loss", trial.params.get("losses")))
    if label is not None:
        try:
            return canonical_row(str(label))
        except ValueError:
            raise ValueError(f"unknown loss row {label!r}") from None
    return _row_of(_weights_of_params(trial.params), "params")


def _row_of(weights: Mapping[str, Any], where: str) -> str:
    try:
        return row_of_weights({str(k): float(v) for k, v in weights.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _weights_of_params(params: Mapping[str, Any]) -> dict[str, float]:
    """Weights from ``use_<loss>`` / ``w_<loss>`` params: off -> 0, on without a weight -> 1."""
    on: dict[str, bool] = {}
    weights: dict[str, float] = {}
    for name, value in params.items():
        kind_loss = param_loss(name)
        if kind_loss is None:
            continue
        kind, loss = kind_loss
        if kind == "use":
            on[loss] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "on", "yes")
        elif kind == "w":
            weights[loss] = float(value)
    for loss, is_on in on.items():
        weights[loss] = weights.get(loss, 1.0) if is_on else 0.0
    return weights


def trial_model(trial: Any) -> Optional[str]:
    """The model as the study names it: user attr ``model``, else param ``model``, else the config's."""
    model = trial.user_attrs.get("model", trial.params.get("model"))
    if model is None:
        try:
            config = trial_config(trial)
        except ValueError:
            config = None
        model = config.model if config is not None else None
    return None if model is None else str(model)


def trial_datasets(trial: Any) -> list[str]:
    """Grid cell: ``[param dataset]``; otherwise the datasets of its score attrs (eval order first).

    An NLI-transfer trial (user attr ``task`` nli) is scored on STS sets, not on its grid dataset (the
    NLI set it trained on), so its datasets are always those it has scores for."""
    if "dataset" in trial.params and trial.user_attrs.get("task") != "nli":
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
    return finite(trial.user_attrs.get(f"scores.{split}.{dataset}"))


def trial_value(trial: Any) -> Optional[float]:
    """The objective value (the first one of a multi-objective trial) as a finite float, else None."""
    values = getattr(trial, "values", None)
    return finite(trial.value if values is None or len(values) == 1 else values[0])


def is_grid_study(trials: Sequence[Any], study_attrs: Mapping[str, Any]) -> bool:
    """A grid study: the study's ``sampler`` attr (or, for old studies, its spec) says grid, or Optuna's
    GridSampler tagged the trials."""
    if isinstance(study_attrs.get("sampler"), str):
        return study_attrs["sampler"].lower() == "grid"
    spec = study_attrs.get("spec")
    if isinstance(spec, Mapping) and "sampler" in spec:
        sampler = spec["sampler"]
        if isinstance(sampler, Mapping):
            sampler = sampler.get("name", sampler.get("type", sampler.get("kind", "")))
        return "grid" in str(sampler).lower()
    return any("grid_id" in t.system_attrs for t in trials)


def axis_order(trials: Sequence[Any], param: str) -> list[str]:
    """Declared choices of a grid/categorical param (GridSampler search space first), in study order."""
    order: list[str] = []
    for trial in trials:
        space = trial.system_attrs.get("search_space")
        if isinstance(space, Mapping) and param in space:
            order += [str(v) for v in space[param] if str(v) not in order]
        choices = getattr(trial.distributions.get(param), "choices", None)
        if choices is not None:
            order += [str(v) for v in choices if str(v) not in order]
    return order


def study_metric(trials: Sequence[Any], study_attrs: Mapping[str, Any]) -> str:
    metric = study_attrs.get("metric")
    if metric is None:
        seen = {str(t.user_attrs["metric"]) for t in trials if "metric" in t.user_attrs}
        metric = seen.pop() if len(seen) == 1 else ("mixed" if seen else None)
    if metric is None:
        task = study_attrs.get("task") or next((t.user_attrs["task"] for t in trials if "task" in t.user_attrs), None)
        metric = {"sts": "spearman", "classification": "accuracy", "nli": "spearman"}.get(str(task), "score")
    return str(metric)


def study_protocol(trials: Sequence[Any], study_attrs: Mapping[str, Any]) -> str:
    protocol = study_attrs.get("protocol")
    if protocol is None:
        seen = {str(t.user_attrs["protocol"]) for t in trials if "protocol" in t.user_attrs}
        protocol = seen.pop() if len(seen) == 1 else ("mixed" if seen else "unknown")
    return str(protocol)


def metric_title(metric: str) -> str:
    return METRIC_TITLES.get(str(metric).lower(), str(metric))
