"""A validated study: :class:`StudySpec`.

The spec knows what every trial of the study trains: its grid cells (models x loss rows x
datasets [x poolings]) or its search space, on top of one base :class:`~tuner.config.RunConfig`
filled from the file's ``[train]`` and ``[budget]`` tables. :meth:`StudySpec.suggest` turns an
Optuna trial into the trial's ``RunConfig``; nothing else describes a run.
"""
from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tuner.config import RunConfig
from tuner.data.beir import is_beir_folder
from tuner.errors import TunerError
from tuner.losses.registry import weights_of_row
from tuner.study.checks import label_of
from tuner.study.space import SearchSpace

METRICS = {"sts": "spearman", "classification": "accuracy", "nli": "spearman"}  # nli: scored on STS
# Keys that may change between runs of one study without making it a different study.
# Keys a running study's file may change: they do not change what a trial computes (warm_start only
# enqueues trials, once, on the first run that has it).
MUTABLE_KEYS = ("description", "n_trials", "max_retries", "warm_start")


@dataclass(frozen=True)
class PrunerSpec:
    type: str = "none"
    options: dict = field(default_factory=dict)

    def build(self) -> Any:
        import optuna

        if self.type == "median":
            return optuna.pruners.MedianPruner(**self.options)
        if self.type == "hyperband":
            return optuna.pruners.HyperbandPruner(**self.options)
        return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class WarmStart:
    """``warm_start = { study = "...", k = 5 }``: enqueue the best ``k`` complete trials of that
    study (same storage) as this study's first trials (:mod:`tuner.service._warm_start`)."""

    study: str
    k: int = 5


@dataclass
class StudySpec:
    name: str
    path: Optional[Path]
    raw: dict
    description: str
    task: str
    models: list[str]
    protocol: str
    sampler: str
    pruner: PrunerSpec
    n_trials: Optional[int]
    seed: int
    max_retries: int
    base: RunConfig                     # [train] + [budget] + data_dir/protocol/seed of the file
    train_datasets: list[str] = field(default_factory=list)
    eval_datasets: list[str] = field(default_factory=list)
    grid_datasets: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)      # grid rows
    grid_pooling: list[Any] = field(default_factory=list)
    search: SearchSpace = field(default_factory=SearchSpace)
    repeats: int = 1                    # seeds per cell (grid) or per configuration (tpe/random)
    model_sources: dict[str, str] = field(default_factory=dict)
    dataset_sources: dict[str, str] = field(default_factory=dict)
    warm_start: Optional[WarmStart] = None
    transfer_eval: list[str] = field(default_factory=list)  # task nli: the STS sets every trial is scored on
    sampler_options: dict[str, Any] = field(default_factory=dict)  # [sampler] table: TPE options
    notes: list[str] = field(default_factory=list)  # what the parser decided for the user, printed once at start

    # ---- derived
    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def metric(self) -> str:
        return METRICS[self.task]

    @property
    def metric_name(self) -> str:
        """The objective as optuna-dashboard names it: ``dev spearman (mean over stsb)``."""
        def short(names: list[str]) -> str:
            names = [Path(n).stem if ("/" in n or "\\" in n) else n for n in names]
            return ", ".join(names) if len(names) <= 4 else f"{', '.join(names[:3])}, ... ({len(names)} sets)"

        if self.task == "nli":
            return f"dev {self.metric} (STS-B dev; trained on {short(self.grid_datasets or self.train_datasets)})"
        if self.is_grid:
            return f"dev {self.metric} (the cell's dataset: {short(self.grid_datasets)})"
        seeds = f"; {self.repeats} seeds" if self.repeats > 1 else ""
        evals = self.eval_datasets or self.train_datasets
        retrieval = [n for n in evals if is_beir_folder(self.dataset_source(n))]
        if retrieval:  # a retrieval folder is scored by NDCG@10 whatever the task
            others = [n for n in evals if n not in retrieval]
            parts = ([f"{self.metric} on {short(others)}"] if others else []) + [f"ndcg@10 on {short(retrieval)}"]
            return f"dev {' and '.join(parts)} (mean{seeds})"
        return f"dev {self.metric} (mean over {short(evals)}{seeds})"

    @property
    def file_label(self) -> str:
        return label_of(self.path)

    @property
    def data_dir(self) -> Optional[str]:
        return self.base.data_dir

    @property
    def seeds(self) -> list[int]:
        """The training seeds of every cell or configuration: ``seed, seed + 1, ...`` (``repeats`` of them)."""
        return [self.seed + i for i in range(self.repeats)]

    def cells(self) -> list[dict[str, Any]]:
        """Grid cells as trial params, in a stable order (models x losses x datasets x pooling x seed).

        With ``repeats > 1`` the seed is an axis, so exactly-once holds per (cell, seed)."""
        if not self.is_grid:
            return []
        axes: list[tuple[str, list[Any]]] = [("model", self.models), ("loss", self.losses),
                                             ("dataset", self.grid_datasets)]
        if len(self.grid_pooling) > 1:
            axes.append(("pooling", self.grid_pooling))
        if self.repeats > 1:
            axes.append(("seed", self.seeds))
        names = [a for a, _ in axes]
        return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in axes))]

    @property
    def n_cells(self) -> int:
        return len(self.cells())

    @property
    def target_trials(self) -> int:
        return self.n_cells if self.is_grid else int(self.n_trials or 0)

    def model_source(self, model: str) -> str:
        return self.model_sources.get(model, model)

    def dataset_source(self, dataset: str) -> str:
        return self.dataset_sources.get(dataset, dataset)

    def compat_dict(self) -> dict:
        """The parts of the file that define the study (changing them makes a different study)."""
        return compat_of(self.raw)

    def run_config(self, model: str, train: list[str], eval: list[str], **changes: Any) -> RunConfig:
        """The base config for ``model`` on these datasets (names as the file gives them)."""
        return self.base.replace(model=self.model_source(model), train=[self.dataset_source(d) for d in train],
                                 eval=[self.dataset_source(d) for d in eval], **changes)

    def suggest(self, trial: Any) -> RunConfig:
        """Sample (or, for a queued grid cell, read) this trial's run config."""
        if self.is_grid:
            model = trial.suggest_categorical("model", list(self.models))
            loss = trial.suggest_categorical("loss", list(self.losses))
            dataset = trial.suggest_categorical("dataset", list(self.grid_datasets))
            changes: dict[str, Any] = {"weights": weights_of_row(loss)}
            if len(self.grid_pooling) > 1:
                changes["pooling"] = trial.suggest_categorical("pooling", list(self.grid_pooling))
            elif self.grid_pooling:
                changes["pooling"] = self.grid_pooling[0]
            if self.repeats > 1:
                changes["seed"] = int(trial.suggest_categorical("seed", self.seeds))
            return self.run_config(model, [dataset], self.scored([dataset]), **changes)
        model = trial.suggest_categorical("model", list(self.models)) if len(self.models) > 1 else self.models[0]
        base = self.run_config(model, self.train_datasets, self.scored(self.train_datasets))
        return self.search.sample(trial, base)

    def scored(self, train: list[str]) -> list[str]:
        """The sets a trial training on ``train`` is scored on: task nli the STS sets, a grid cell its
        own dataset, else ``eval_datasets`` (default: the train sets)."""
        if self.task == "nli":
            return list(self.transfer_eval)
        return list(train) if self.is_grid else list(self.eval_datasets or train)

    def zero_shot_pooling(self) -> Any:
        """The pooling the zero-shot row is scored with (the grid's single pooling, else [train])."""
        return self.grid_pooling[0] if self.is_grid and len(self.grid_pooling) == 1 else self.base.pooling

    def zero_shot_prompt(self) -> Optional[str]:
        """The prompt the zero-shot row is scored with: a single ``[search] prompt``, else [train]'s
        (a searched choice of prompts leaves [train]'s, so the row never depends on a trial's draw)."""
        param = self.search.params.get("prompt") if self.search is not None else None
        if param is not None and param.kind == "fixed":
            return None if param.value == "none" else param.value
        return self.base.prompt

    def build_sampler(self, seed: Optional[int] = None) -> Any:
        """TPE: multivariate + group (the on/off space makes weights and taus conditional),
        constant liar (parallel workers), a quarter of the trials (at most 10) random first;
        a ``[sampler]`` table overrides each of these (``bench/hpo_efficiency.py`` compares them)."""
        import optuna

        seed = self.seed if seed is None else seed
        if self.sampler == "tpe":
            options = {"multivariate": True, "group": True, "constant_liar": True,
                       "n_startup_trials": max(1, min(10, (self.n_trials or 10) // 4)), **self.sampler_options}
            if not options["multivariate"]:
                options["group"] = False  # the default group=True needs multivariate (the parser refuses both set)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.TPESampler(seed=seed, **options)
        # grid cells are queued with fixed params, so the sampler never chooses anything for them
        return optuna.samplers.RandomSampler(seed=seed)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.file_label, "description": self.description,
                               "task": self.task, "sampler": self.sampler, "pruner": self.pruner.type,
                               "protocol": self.protocol, "models": self.models}
        if self.repeats > 1:
            out["repeats"] = self.repeats
        if self.task == "nli":
            out["eval"] = self.transfer_eval
        if self.is_grid:
            out.update(cells=self.n_cells, losses=self.losses, datasets=self.grid_datasets)
        else:
            out.update(n_trials=self.n_trials, train=self.train_datasets, eval=self.scored(self.train_datasets),
                       search=self.search.describe())
        return out


def compat_of(raw: dict) -> dict:
    """The parts of a study file (``raw``, or the copy a storage recorded) that define the study: all
    but :data:`MUTABLE_KEYS`, and without the ``[train]``/``[budget]`` keys that restate
    :class:`RunConfig`'s default, so a file that stops restating one (``taus = { cosent = 20.0, ... }``,
    the registry's defaults) resumes the study it made."""
    out = {k: v for k, v in raw.items() if k not in MUTABLE_KEYS}
    default = RunConfig()
    for section in ("train", "budget"):
        table = out.get(section)
        if isinstance(table, dict):
            kept = {k: v for k, v in table.items() if not _restates_default(default, k, v)}
            if kept:
                out[section] = kept
            else:
                del out[section]
    return out


def _restates_default(default: RunConfig, key: str, value: Any) -> bool:
    if key == "seed":  # [train] seed defaults to the study's seed, not to RunConfig's
        return False
    try:
        return getattr(default.replace(**{key: value}), key) == getattr(default, key)
    except (TunerError, TypeError, ValueError):
        return False


def cell_key(params: dict[str, Any]) -> str:
    """A stable key for a grid cell's params (dedupe across workers and machines)."""
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)
