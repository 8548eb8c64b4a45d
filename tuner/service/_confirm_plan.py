"""What ``tuner confirm`` runs: the top K configurations of a study, the baselines and the budget.

The plan is a JSON dict, fixed when the confirm study is created and kept in its user attr
``confirm`` (with ``parent_study``): re-running the command reads it back instead of choosing the
top K again, so every machine and every resume runs the same configurations even while the
parent study grows, and a different ``--top``/``--seeds``/budget/baselines on the same name is
one clear error (:func:`check_request`).

The plan becomes a grid study through :class:`ConfirmSpec`: a :class:`~tuner.study.StudySpec`
whose cells are ``{config, model, seed}`` (every configuration and trained baseline x every
seed) and whose :meth:`~ConfirmSpec.suggest` returns the recorded run config with the cell's
seed. The study service queues and runs those cells exactly once, as for any grid
(:mod:`tuner.service._study_service`); the objective is the study task's own
(:func:`objectives.common.run_objective`), which also records the zero-shot items once per model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from tuner.config import RunConfig
from tuner.data import load_dataset
from tuner.errors import ConfigError, TunerError
from tuner.exporter.confirm import ZERO_SHOT
from tuner.exporter.trials import finite, trial_config, trial_datasets, trial_model, trial_value
from tuner.study import METRICS, PrunerSpec, StudySpec

CONFIRM_ATTR = "confirm"      # the confirm study's plan
PARENT_ATTR = "parent_study"  # the study it confirms
ST_EXAMPLE = "st-example"
BASELINES = (ZERO_SHOT, ST_EXAMPLE)
#: The run settings ``confirm`` takes as flags: the confirmation budget. Unset: the full training
#: set and the full dev and test files (None), and each configuration's own epochs.
BUDGET_FIELDS = ("epochs", "max_steps", "max_train_examples", "max_eval_examples")
#: sentence-transformers' ``examples/sentence_transformer/training/sts/training_stsbenchmark.py``
#: (read for 6.3): CosineSimilarityLoss (MSE of the cosine against the 0..1 gold score: tuner's
#: cos_mse), mean pooling, batch 16, 4 epochs, ``warmup_steps=0.1`` (10% of the steps); the learning
#: rate, weight decay, clipping and the shuffled (not length-grouped) batches are the defaults of
#: ``SentenceTransformerTrainingArguments`` (lr 5e-5, weight decay 0, max_grad_norm 1). The file's
#: ``fp16=True`` is tuner's ``precision = "auto"`` on a GPU; on a CPU both run fp32.
ST_EXAMPLE_RECIPE: dict[str, Any] = {
    "weights": {"cos_mse": 1.0}, "pooling": "avg", "batch_size": 16, "epochs": 4, "warmup_ratio": 0.1,
    "lr": 5e-5, "weight_decay": 0.0, "max_grad_norm": 1.0, "length_grouping": False}


def check_request(top: int, seeds: Sequence[int], budget: Optional[Mapping[str, Any]],
                  baselines: Sequence[str]) -> dict[str, Any]:
    """The request as a JSON dict, every value checked (one-line :class:`TunerError`s, nothing opened)."""
    if not isinstance(top, int) or top < 1:
        raise TunerError(f"--top {top}: use 1 or more configurations")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise TunerError("--seeds is empty; give one or more training seeds, e.g. --seeds 42,43,44")
    if len(set(seeds)) != len(seeds):
        raise TunerError(f"--seeds {','.join(map(str, seeds))} names a seed twice; list each seed once")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise TunerError(f"--baselines: unknown baseline '{unknown[0]}'; use {', '.join(BASELINES)} or none")
    budget = dict(budget or {})
    extra = sorted(set(budget) - set(BUDGET_FIELDS))
    if extra:
        raise TunerError(f"budget setting '{extra[0]}' is not a confirmation budget; use {', '.join(BUDGET_FIELDS)}")
    try:
        RunConfig().replace(**{k: v for k, v in budget.items() if v is not None})
    except ConfigError as exc:
        raise TunerError(f"--{exc.key.replace('_', '-')}: {exc.problem}") from None
    return {"top": top, "seeds": seeds, "budget": {k: budget.get(k) for k in BUDGET_FIELDS},
            "baselines": list(dict.fromkeys(baselines))}


def budget_changes(budget: Mapping[str, Any]) -> dict[str, Any]:
    """RunConfig changes of a confirmation budget: unset data limits mean the full files, unset
    epochs the configuration's own; no intermediate dev scores (no pruning in a confirmation)."""
    changes = {k: budget.get(k) for k in ("max_steps", "max_train_examples", "max_eval_examples")}
    changes["eval_every"] = None
    if budget.get("epochs") is not None:
        changes["epochs"] = int(budget["epochs"])
    return changes


def check_same_request(name: str, stored: Mapping[str, Any], request: Mapping[str, Any], parent: str,
                       dataset: Optional[str], on: Optional[str] = None, model: Optional[str] = None) -> None:
    """A re-run resumes only with the request the confirm study was made with."""
    asked = {**request, "parent": parent, "dataset": dataset, "on": on, "model": model}
    differs = [k for k in asked if stored.get(k) != asked[k]]
    if differs:
        was = ", ".join(f"{k}={json.dumps(stored.get(k))}" for k in differs)
        now = ", ".join(f"{k}={json.dumps(asked[k])}" for k in differs)
        raise TunerError(f"confirm study '{name}' was made with {was}, this run asks {now}; run with the same "
                         f"settings to resume it, or pass --study-name NEW_NAME for a new confirmation")


def top_configs(trials: Sequence[Any], top: int, parent: str, dataset: Optional[str] = None) -> list[dict[str, Any]]:
    """The ``top`` distinct configurations of the parent's COMPLETE trials, by (mean) dev value.

    Trials that differ only in their training seed (a grid's seed axis) are one configuration
    whose dev value is their mean. Trials without a recorded run config are left out."""
    groups: dict[str, dict[str, Any]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        value = trial_value(t)
        try:
            config = trial_config(t)
        except ValueError:
            config = None
        if value is None or config is None:
            continue
        datasets = trial_datasets(t)
        if dataset is not None and datasets != [dataset]:
            continue
        key = json.dumps({**config.to_dict(), "seed": None}, sort_keys=True, default=str)
        group = groups.setdefault(key, {"label": f"trial-{t.number}", "trials": [], "values": [],
                                        "params": {k: v for k, v in t.params.items() if k != "seed"},
                                        "model": trial_model(t) or config.model, "datasets": datasets,
                                        "config": config})
        group["trials"].append(t.number)
        group["values"].append(value)
    ranked = sorted(groups.values(), key=lambda g: (-sum(g["values"]) / len(g["values"]), g["trials"][0]))
    if len(ranked) < top:
        where = f" scored on {dataset}" if dataset else ""
        raise TunerError(f"study '{parent}' has {len(ranked)} distinct complete configuration(s){where} with a recorded "
                         f"run config; use --top {max(1, len(ranked))} or fewer, or let the study run longer")
    chosen = ranked[:top]
    seen = {tuple(g["datasets"]) for g in chosen}
    if len(seen) > 1:
        shown = "; ".join(",".join(s) for s in sorted(seen))
        raise TunerError(f"the top {top} configurations of study '{parent}' are scored on different datasets ({shown}): "
                         f"their test items differ, so they cannot be compared pairwise; pick one with --dataset NAME")
    return chosen


def transfer(on: str, task: str, data_dir: Optional[str] = None) -> tuple[dict[str, Any], list[str]]:
    """RunConfig changes that train and score a configuration on the dataset ``on`` (its train split
    for training, its dev and test splits for scoring) instead of the data it was searched on, and
    the dataset's name as scores record it: ``confirm --on sickr`` asks whether STS-B's answer holds
    on SICK-R. ``on`` is loaded here, so a wrong name or a file of another task is one clear line."""
    try:
        data = load_dataset(on, data_dir=data_dir)
    except TunerError as exc:
        raise TunerError(f"--on {on}: {exc}") from None
    if data.task != task:
        raise TunerError(f"--on {on}: it holds {data.task} data, and the study being confirmed is a {task} study; "
                         f"name a {task} dataset")
    return {"train": [on], "eval": [on]}, [data.name]


def make_plan(request: Mapping[str, Any], parent: str, parent_attrs: Mapping[str, Any], trials: Sequence[Any],
              dataset: Optional[str] = None, on: Optional[str] = None, model: Optional[str] = None) -> dict[str, Any]:
    """The plan (module docstring) for ``request`` from the parent's trials and attrs; ``on``: train
    and score every system on that dataset instead (:func:`transfer`); ``model``: with that model
    (hub name, built-in name or folder) instead of the searched one."""
    chosen = top_configs(trials, request["top"], parent, dataset)
    task = str(parent_attrs.get("task") or chosen[0]["config"].task or "sts")
    moved, datasets = transfer(on, task, chosen[0]["config"].data_dir) if on is not None else ({}, list(chosen[0]["datasets"]))
    changes = {**budget_changes(request["budget"]), **moved, **({"model": model} if model else {})}
    configs = [{"label": g["label"], "params": g["params"], "parent_trials": g["trials"],
                "parent_dev": sum(g["values"]) / len(g["values"]), "model": model or g["model"],
                "config": g["config"].replace(**changes).to_dict()} for g in chosen]
    best = chosen[0]["config"]
    trained = []
    if ST_EXAMPLE in request["baselines"]:
        trained.append({"label": ST_EXAMPLE, "model": model or chosen[0]["model"], "params": {},
                        "config": best.replace(**ST_EXAMPLE_RECIPE).replace(**changes).to_dict(),
                        "recipe": "sentence-transformers' training_stsbenchmark.py on the best configuration's model "
                                  "and data"})
    poolings = {json.dumps(g["config"].pooling) for g in chosen}
    prompts = {json.dumps(g["config"].prompt) for g in chosen}
    return {**request, "parent": parent, "dataset": dataset, "on": on, "model": model, "task": task,
            "metric": METRICS.get(task, "spearman"), "datasets": datasets,
            "configs": configs, "trained_baselines": trained,
            # the zero-shot row: the configurations' pooling and prompt when they share one, else the model's own
            "zero_shot": {"pooling": json.loads(poolings.pop()) if len(poolings) == 1 else None,
                          "prompt": json.loads(prompts.pop()) if len(prompts) == 1 else None}}


@dataclass
class ConfirmSpec(StudySpec):
    """A confirm study as a grid: cells ``{config, model, seed}`` (see the module docstring)."""

    plan: dict = field(default_factory=dict)

    @property
    def systems(self) -> list[dict[str, Any]]:
        """The configurations and the trained baselines: everything that runs once per seed."""
        return list(self.plan["configs"]) + list(self.plan["trained_baselines"])

    @property
    def file_label(self) -> str:
        return f"confirm of '{self.plan['parent']}'"

    @property
    def metric_name(self) -> str:
        return f"dev {self.metric} (confirming the top {self.plan['top']} of {self.plan['parent']})"

    def cells(self) -> list[dict[str, Any]]:
        return [{"config": s["label"], "model": s["model"], "seed": seed}
                for s in self.systems for seed in self.plan["seeds"]]

    def suggest(self, trial: Any) -> RunConfig:
        systems = {s["label"]: s for s in self.systems}
        label = trial.suggest_categorical("config", list(systems))
        trial.suggest_categorical("model", list(self.models))
        seed = int(trial.suggest_categorical("seed", list(self.plan["seeds"])))
        return RunConfig.from_dict(systems[label]["config"], strict=False).replace(seed=seed)

    def zero_shot_pooling(self) -> Any:
        return self.plan["zero_shot"]["pooling"]

    def zero_shot_prompt(self) -> Optional[str]:
        return self.plan["zero_shot"]["prompt"]


def confirm_spec(name: str, plan: dict[str, Any]) -> ConfirmSpec:
    """The :class:`ConfirmSpec` of ``plan`` for the confirm study ``name``."""
    first = RunConfig.from_dict(plan["configs"][0]["config"], strict=False)
    systems = list(plan["configs"]) + list(plan["trained_baselines"])
    models = list(dict.fromkeys(s["model"] for s in systems))
    return ConfirmSpec(name=name, path=None, raw={"name": name, CONFIRM_ATTR: plan},
                       description=f"confirm the top {plan['top']} configurations of {plan['parent']}",
                       task=plan["task"], models=models, protocol=first.protocol, sampler="grid", pruner=PrunerSpec(),
                       n_trials=None, seed=int(plan["seeds"][0]), max_retries=2, base=first,
                       model_sources={s["model"]: s["config"]["model"] for s in systems}, plan=plan)


def parent_dev(plan: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """Each configuration's dev value in the parent study (the cheap search's estimate)."""
    return {c["label"]: finite(c.get("parent_dev")) for c in plan["configs"]}
