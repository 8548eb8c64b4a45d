"""The best trial of a non-grid study as a ready-to-run command and as a study that refines it.

Both files are rebuilt from the trial's recorded run config (user attr ``config``,
:class:`tuner.config.RunConfig`), never from the study file: the config is what the trial trained
with, whatever the study file said and however it changed since.

* :func:`best_finetune` -> ``best_finetune.json``: ``command`` / ``argv`` (``python -m tuner
  finetune ...`` from :meth:`RunConfig.to_argv <tuner.config.RunConfig.to_argv>`), ``config`` (the
  run config as a dict), ``scores``, ``params``, ``trial``, ``objective``, the trial's row.
* :func:`best_study_toml` -> ``best_study.toml``: a TPE study around the trial. Its ``[search]``
  fixes the trial's loss combination (``losses = "<row>"``) and searches ``w_<loss>`` and
  ``tau_<loss>`` of the losses that are on, and the lr, within x/÷ :data:`REFINE_FACTOR` of the
  trial's values; pooling, epochs and every other setting are fixed to the trial's (``[train]``,
  ``[budget]``).

Trials recorded before run configs were (no ``config`` attr) get neither file: :func:`recorded_config`
raises :class:`LegacyTrial`, and the export says so (re-export such a study with the tuner version
that ran it).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from tuner.config import RunConfig, section_fields
from tuner.errors import TunerError
from tuner.exporter.rows import title
from tuner.exporter.toml import toml_dumps
from tuner.exporter.trials import SPLITS, trial_config, trial_datasets, trial_score, trial_value
from tuner.losses.registry import LOSSES, tau_param, weight_param

REFINE_FACTOR = 1.5      # best_study.toml searches continuous params within [best / 1.5, best * 1.5]
REFINE_TRIALS = 10


class LegacyTrial(TunerError):
    """The trial has no recorded run config (written by a tuner before run configs were recorded)."""


def recorded_config(trial: Any) -> RunConfig:
    """The trial's :class:`RunConfig`; :class:`LegacyTrial` without one, TunerError when it does not load."""
    try:
        config = trial_config(trial)
    except ValueError as exc:
        raise TunerError(f"trial {trial.number}: {exc}") from None
    if config is None:
        raise LegacyTrial(f"trial {trial.number} has no recorded run config (user attr 'config'; studies run "
                          f"before run configs were recorded): re-export it with the tuner version that ran it")
    return config


def best_finetune(trial: Any, study_name: Optional[str] = None) -> dict[str, Any]:
    """``best_finetune.json``: the trial's recorded run config as a ``python -m tuner finetune`` command.

    The command trains exactly as the trial did but scores the full dev and test splits: a
    study's ``max_eval_examples`` is a per-trial evaluation budget, not part of the recipe, and
    the number to report is the full test score. ``config`` is what the command runs (so
    ``finetune --config best_finetune.json`` runs the same), ``trial_max_eval_examples`` the trial's own sample."""
    recorded = recorded_config(trial)
    config = recorded.replace(max_eval_examples=None)
    datasets = trial_datasets(trial)
    return {
        "study": study_name, "trial": trial.number, "objective": trial_value(trial),
        "objective_is": "mean dev score over the eval datasets",
        "loss": config.loss, "loss_title": title(config.loss), "losses": list(config.losses),
        "command": config.command(),
        "argv": ["python", "-m", "tuner", "finetune", *config.to_argv()],
        "config": config.to_dict(),
        "trial_max_eval_examples": recorded.max_eval_examples,
        "command_scores": "the full dev and test splits" + (
            f" (the trial scored {recorded.max_eval_examples}-pair samples)" if recorded.max_eval_examples else ""),
        "scores": {split: {d: trial_score(trial, split, d) for d in datasets} for split in SPLITS[::-1]},
        "params": dict(trial.params),
        **({"scores_by_seed": trial.user_attrs["scores_by_seed"],
            "note": "scores are the means over the seeds of scores_by_seed; the command runs the first seed "
                    "(add --seed N for the others)"} if _seeds(trial) > 1 else {}),
    }


def _seeds(trial: Any) -> int:
    """How many seeds the trial's scores average (``repeats`` of its study), from ``scores_by_seed``."""
    by_seed = trial.user_attrs.get("scores_by_seed")
    return len(by_seed) if isinstance(by_seed, Mapping) else 1


def _fmt_number(value: Optional[float]) -> str:
    return format(float(value if value is not None else math.nan), ".6g")


def _band(value: float, *, log: bool = False) -> dict[str, Any]:
    """``{low, high}`` within x/÷ :data:`REFINE_FACTOR` of ``value`` (> 0)."""
    band: dict[str, Any] = {"low": float(f"{float(value) / REFINE_FACTOR:.6g}"),
                            "high": float(f"{float(value) * REFINE_FACTOR:.6g}")}
    if log:
        band["log"] = True
    return band


def refine_search(config: RunConfig) -> dict[str, Any]:
    """``[search]`` around ``config``: its losses fixed, their weights and taus and the lr searched."""
    search: dict[str, Any] = {"losses": config.loss}
    for loss, weight in config.active_weights.items():
        search[weight_param(loss)] = _band(weight)
        if LOSSES[loss].has_tau:
            search[tau_param(loss)] = _band(config.taus[loss], log=True)
    search["lr"] = _band(config.lr, log=True)
    return search


def _settings(config: RunConfig, section: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config's fields of a study-file table (``train`` / ``budget``), None and empty mappings left out."""
    return {name: getattr(config, name) for name in section_fields(section)
            if name not in skip and getattr(config, name) is not None and getattr(config, name) != {}}


def _switched_off(config: RunConfig) -> tuple[str, ...]:
    """Settings of features the run did not use (LoRA off, no checkpointing): left out of the file."""
    off = () if getattr(config, "lora_r", None) else ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
    return off + (() if getattr(config, "gradient_checkpointing", False) else ("gradient_checkpointing",))


def best_study_toml(trial: Any, study_attrs: Mapping[str, Any], study_name: Optional[str] = None) -> str:
    """``best_study.toml``: a study file that refines ``trial`` (see the module docstring).

    To re-run exactly the best configuration use ``best_finetune.json``'s command. No storage URL is
    written (pass ``--storage`` when running it).
    """
    config = recorded_config(trial)
    name = f"{study_name or 'study'}-best"
    value = _fmt_number(trial_value(trial))
    task = config.task or trial.user_attrs.get("task") or study_attrs.get("task") or "sts"
    doc: dict[str, Any] = {
        "name": name,
        "description": f"Refine trial {trial.number} of study {study_name} (mean dev {value}, losses {config.loss})",
        "task": task, "models": [config.model], "protocol": config.protocol, "sampler": "tpe",
        "pruner": "median" if config.eval_every else "none",   # a pruner needs intermediate dev scores
        "n_trials": REFINE_TRIALS, "seed": config.seed, "repeats": _seeds(trial) if _seeds(trial) > 1 else None,
        "data_dir": config.data_dir,
        "data": {"train": list(config.train), "eval": list(config.eval_sets)},
        "budget": _settings(config, "budget"),
        # weights, taus and lr are searched; the other [train] settings are the trial's
        "train": _settings(config, "train", skip=("weights", "taus", "lr", *(() if task == "nli" else ("nli_neutral",)),
                                                  *_switched_off(config))),
        "search": refine_search(config),
    }
    header = [f"# Refines the best trial ({trial.number}) of study '{study_name}': objective (mean dev score) "
              f"{value}, losses {config.loss} ({title(config.loss)}).",
              f"# The losses, pooling, epochs and every setting but the weights, taus and lr are fixed to the "
              f"trial's; those are searched within x/÷ {REFINE_FACTOR:g} of its values.",
              f"#   python -m tuner optimize --study path/to/{name}.toml --storage <URL>",
              "# Exactly the best configuration, once: the command in best_finetune.json."]
    return "\n".join(header) + "\n" + toml_dumps({k: v for k, v in doc.items() if v not in (None, {}, [])})
