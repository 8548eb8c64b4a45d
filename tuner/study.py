"""Study files: ``studies/*.toml`` -> a validated :class:`StudySpec`.

A study file is parsed with :mod:`tomllib` (never executed) and checked completely before
anything touches a storage; every problem is one :class:`~tuner.errors.TunerError` line naming the
file and the key. The spec turns an optuna trial into a :class:`TrialChoice` (what to train) and,
for grid studies, lists the cells.

Layout (see ``studies/sts.toml`` for a commented example)::

    name = "sts"                      # optional; default: the file name
    description = "..."
    task = "sts"                      # or "classification"
    models = ["all-MiniLM-L6-v2"]     # hub ids, bundled names or folders (relative to this file)
    protocol = "standard"             # or "seed" (70/30 of the official table, dev from the 70)
    sampler = "tpe"                   # tpe | random | grid
    pruner = "median"                 # none | median | hyperband, or a [pruner] table
    n_trials = 40                     # tpe/random only: trials in total, over all workers
    seed = 42
    max_retries = 2                   # re-runs of a failed cell / of a trial whose worker died
    data_dir = "../shared/data"       # optional (relative to this file)

    [data]
    train = ["stsb"]                  # tpe/random: what every trial trains on ...
    eval = ["stsb"]                   # ... and is scored on (default: train)
    datasets = ["sts12", "stsb"]      # grid: one cell per dataset (train = eval)

    [budget]                          # per trial
    epochs = 1
    max_steps = 500                   # optional, overrides epochs
    max_train_examples = 20000        # optional subsample of the training pairs
    max_eval_examples = 1000          # optional subsample of every dev/test split
    eval_every = 100                  # steps between intermediate dev scores (pruning)

    [train]                           # fixed settings (searched ones are overridden)
    batch_size = 32
    lr = 2e-5
    max_seq_length = 128
    pooling = "cls"                   # default: the model's own pooling
    taus = { cosent = 20.0, ibn = 20.0, angle = 1.0 }

    [search]                          # tpe/random: what the sampler chooses
    w_cosent = [0.0, 1.0]             # a two-number list is a range [low, high]
    tau_cosent = [5.0, 50.0]          # taus and lr are sampled on a log scale
    w_ibn = { choices = [0, 1] }      # on/off
    pooling = ["cls", "avg"]          # pooling and batch_size: a list is a choice
    lr = { low = 1e-5, high = 1e-4, log = true }
    epochs = [1, 3]

    [grid]                            # grid: cells = models x losses x datasets (x pooling)
    losses = "all"                    # or a list of rows: cos_mse, cosent, ibn, angle, cosent+ibn, ...
    pooling = ["cls"]                 # optional; two or more make pooling a grid axis
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tuner.combos import FINETUNE_ROWS, row_of_weights, weights_of_row
from tuner.errors import TunerError

ENV_STUDIES_DIR = "TUNER_STUDIES_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS = ("sts", "classification")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
PROTOCOLS = ("seed", "standard")
METRICS = {"sts": "spearman", "classification": "accuracy"}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

TOP_KEYS = ("name", "description", "task", "models", "protocol", "sampler", "pruner", "n_trials", "seed",
            "max_retries", "data_dir", "data", "budget", "train", "search", "grid")
DATA_KEYS = ("train", "eval", "datasets")
BUDGET_KEYS = ("epochs", "max_steps", "max_train_examples", "max_eval_examples", "eval_every")
TRAIN_KEYS = ("batch_size", "lr", "max_seq_length", "warmup_ratio", "weight_decay", "precision",
              "ibn_positive_threshold", "pooling", "taus")
TAU_KEYS = ("cosent", "ibn", "angle")
WEIGHT_PARAMS = ("w_cos_mse", "w_cosent", "w_ibn", "w_angle")
TAU_PARAMS = ("tau_cosent", "tau_ibn", "tau_angle")
SEARCH_KEYS = WEIGHT_PARAMS + TAU_PARAMS + ("pooling", "lr", "epochs", "batch_size", "warmup_ratio")
GRID_KEYS = ("losses", "pooling")
PRUNER_KEYS = ("type", "n_startup_trials", "n_warmup_steps", "interval_steps", "min_resource", "max_resource",
               "reduction_factor")
# Keys that may change between runs of one study without making it a different study.
MUTABLE_KEYS = ("description", "n_trials", "max_retries")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# --------------------------------------------------------------------------------------------
# Finding study files


def studies_dirs() -> list[Path]:
    """Folders searched for ``--study NAME``: $TUNER_STUDIES_DIR, ./studies, <repo>/studies."""
    dirs = []
    env = os.environ.get(ENV_STUDIES_DIR, "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [Path.cwd() / "studies", REPO_ROOT / "studies"]
    out: list[Path] = []
    for d in dirs:
        d = d.resolve()
        if d not in out:
            out.append(d)
    return out


def list_study_files() -> list[Path]:
    """Every ``*.toml`` in the study folders (first folder wins for a repeated name)."""
    seen: dict[str, Path] = {}
    for folder in studies_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                seen.setdefault(path.stem, path)
    return sorted(seen.values(), key=lambda p: p.stem)


def find_study_file(name_or_path: "str | os.PathLike") -> Path:
    """A study name (``sts``) from the study folders, or a path to a TOML file."""
    text = str(name_or_path).strip()
    if not text:
        raise TunerError("--study is empty; pass a study name (python -m tuner studies lists them) or a .toml path")
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix == ".toml" or os.sep in text or text.startswith("."):
        raise TunerError(f"study file {text} does not exist; check the path or pass a study name "
                         "(python -m tuner studies lists them)")
    for folder in studies_dirs():
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return candidate.resolve()
    names = [p.stem for p in list_study_files()]
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TunerError(f"unknown study '{text}'; {hint}known studies: {', '.join(names) or 'none'} "
                     f"(in {', '.join(str(d) for d in studies_dirs())}); or pass a path to a .toml file")


# --------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) hyperparameter."""

    name: str
    kind: str  # "float" | "int" | "categorical" | "fixed"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: tuple = ()
    value: Any = None

    def suggest(self, trial: Any) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.value!r}"
        if self.kind == "categorical":
            return "{" + ", ".join(map(repr, self.choices)) + "}"
        return f"[{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


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
class Budget:
    epochs: int = 1
    max_steps: Optional[int] = None
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    eval_every: Optional[int] = None


@dataclass(frozen=True)
class TrainDefaults:
    batch_size: int = 32
    lr: float = 2e-5
    max_seq_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    precision: str = "auto"
    ibn_positive_threshold: float = 0.6
    pooling: Any = None  # None -> the model's default
    taus: dict = field(default_factory=lambda: {"cosent": 20.0, "ibn": 20.0, "angle": 1.0})


@dataclass
class TrialChoice:
    """What one trial trains: the sampled (or cell) configuration."""

    model: str
    loss: str
    weights: dict[str, float]
    taus: dict[str, float]
    pooling: Any
    lr: float
    epochs: int
    batch_size: int
    warmup_ratio: float
    train: list[str]
    eval: list[str]


@dataclass
class StudySpec:
    name: str
    path: Optional[Path]
    raw: dict
    description: str
    task: str
    models: list[str]
    model_sources: dict[str, str]
    protocol: str
    sampler: str
    pruner: PrunerSpec
    n_trials: Optional[int]
    seed: int
    max_retries: int
    data_dir: Optional[str]
    train_datasets: list[str]
    eval_datasets: list[str]
    grid_datasets: list[str]
    losses: list[str]
    grid_pooling: list[Any]
    budget: Budget
    train: TrainDefaults
    search: dict[str, Param]
    dataset_sources: dict[str, str] = field(default_factory=dict)

    # ---- derived
    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def metric(self) -> str:
        return METRICS[self.task]

    @property
    def file_label(self) -> str:
        return _label(self.path)

    def cells(self) -> list[dict[str, Any]]:
        """Grid cells as trial params, in a stable order (models x losses x datasets x pooling)."""
        if not self.is_grid:
            return []
        axes: list[tuple[str, list[Any]]] = [("model", self.models), ("loss", self.losses),
                                             ("dataset", self.grid_datasets)]
        if len(self.grid_pooling) > 1:
            axes.append(("pooling", self.grid_pooling))
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
        return {k: v for k, v in self.raw.items() if k not in MUTABLE_KEYS}

    def suggest(self, trial: Any) -> TrialChoice:
        """Sample (or, for a queued grid cell, read) this trial's configuration."""
        t = self.train
        if self.is_grid:
            model = trial.suggest_categorical("model", list(self.models))
            loss = trial.suggest_categorical("loss", list(self.losses))
            dataset = trial.suggest_categorical("dataset", list(self.grid_datasets))
            pooling = trial.suggest_categorical("pooling", list(self.grid_pooling)) if len(self.grid_pooling) > 1 \
                else (self.grid_pooling[0] if self.grid_pooling else t.pooling)
            return TrialChoice(model=model, loss=loss, weights=weights_of_row(loss), taus=dict(t.taus),
                               pooling=pooling, lr=t.lr, epochs=self.budget.epochs, batch_size=t.batch_size,
                               warmup_ratio=t.warmup_ratio, train=[dataset], eval=[dataset])
        model = trial.suggest_categorical("model", list(self.models)) if len(self.models) > 1 else self.models[0]
        values = {name: param.suggest(trial) for name, param in self.search.items()}
        weights = {name[2:]: float(values.get(name, 0.0)) for name in WEIGHT_PARAMS if name in values}
        for name in ("cosent", "ibn", "angle"):
            weights.setdefault(name, 0.0)
        taus = dict(t.taus)
        for name in TAU_PARAMS:
            if name in values:
                taus[name[4:]] = float(values[name])
        return TrialChoice(
            model=model, loss=row_of_weights(weights), weights=weights, taus=taus,
            pooling=values.get("pooling", t.pooling), lr=float(values.get("lr", t.lr)),
            epochs=int(values.get("epochs", self.budget.epochs)), batch_size=int(values.get("batch_size", t.batch_size)),
            warmup_ratio=float(values.get("warmup_ratio", t.warmup_ratio)),
            train=list(self.train_datasets), eval=list(self.eval_datasets or self.train_datasets),
        )

    def train_config(self, choice: TrialChoice) -> Any:
        from tuner.train import TrainConfig

        t, b = self.train, self.budget
        return TrainConfig(weights=dict(choice.weights), taus=dict(choice.taus), pooling=choice.pooling,
                           lr=choice.lr, epochs=choice.epochs, max_steps=b.max_steps, batch_size=choice.batch_size,
                           max_seq_length=t.max_seq_length, warmup_ratio=choice.warmup_ratio,
                           weight_decay=t.weight_decay, seed=self.seed,
                           ibn_positive_threshold=t.ibn_positive_threshold, precision=t.precision,
                           eval_every=b.eval_every)

    def build_sampler(self, seed: Optional[int] = None) -> Any:
        import optuna

        seed = self.seed if seed is None else seed
        if self.sampler == "tpe":
            startup = max(1, min(10, (self.n_trials or 10) // 4))
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True,
                                              n_startup_trials=startup)
        # grid cells are queued with fixed params, so the sampler never chooses anything for them
        return optuna.samplers.RandomSampler(seed=seed)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.file_label, "description": self.description,
                               "task": self.task, "sampler": self.sampler, "pruner": self.pruner.type,
                               "protocol": self.protocol, "models": self.models}
        if self.is_grid:
            out.update(cells=self.n_cells, losses=self.losses, datasets=self.grid_datasets)
        else:
            out.update(n_trials=self.n_trials, train=self.train_datasets, eval=self.eval_datasets,
                       search={k: p.describe() for k, p in self.search.items()})
        return out


# --------------------------------------------------------------------------------------------
# Parsing and validation


def _label(path: Optional[Path]) -> str:
    if path is None:
        return "<study>"
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Checker:
    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self.label = _label(path)
        self.base = path.resolve().parent if path is not None else Path.cwd()

    def fail(self, key: str, problem: str) -> TunerError:
        return TunerError(f"{self.label}: key '{key}': {problem}")

    def table(self, raw: dict, key: str, allowed: tuple[str, ...]) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), got {type(value).__name__}")
        self.known(value, allowed, key + ".")
        return value

    def known(self, table: dict, allowed: tuple[str, ...], prefix: str = "") -> None:
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f"did you mean '{prefix}{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                raise self.fail(prefix + k, f"unknown key; {hint}")

    def string(self, value: Any, key: str, choices: Optional[tuple[str, ...]] = None) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {_show(value)}")
        text = value.strip()
        if choices is not None and text.lower() not in choices:
            raise self.fail(key, f"'{value}' is not one of {', '.join(choices)}")
        return text.lower() if choices is not None else text

    def integer(self, value: Any, key: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_show(value)}")
        if value < minimum:
            raise self.fail(key, f"is {value}; use {minimum} or more")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False, minimum: Optional[float] = None,
               below: Optional[float] = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {_show(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise self.fail(key, f"is {value}; use a finite number")
        if positive and number <= 0:
            raise self.fail(key, f"is {value}; it must be > 0")
        if minimum is not None and number < minimum:
            raise self.fail(key, f"is {value}; it must be >= {minimum:g}")
        if below is not None and number >= below:
            raise self.fail(key, f"is {value}; it must be < {below:g}")
        return number

    def string_list(self, value: Any, key: str, allow_str: bool = True) -> list[str]:
        if isinstance(value, str) and allow_str:
            value = [value]
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of strings, got {_show(value)}")
        if not value:
            raise self.fail(key, "is empty; list at least one entry")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{key}[{i}]", f"must be a non-empty string, got {_show(item)}")
            out.append(item.strip())
        if len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            raise self.fail(key, f"lists '{dup}' twice; remove the duplicate")
        return out

    def local_path(self, text: str) -> Optional[Path]:
        """A relative/absolute path given in the file, resolved against the file's folder."""
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = self.base / p
        return p


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return f"{text[:60]} ({type(value).__name__})"


def _pooling_value(check: _Checker, value: Any, key: str) -> Any:
    from tuner.pooling import parse_pooling

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise check.fail(key, f"must be a pooling name or token index, got {_show(value)}")
    try:
        return parse_pooling(value)
    except TunerError as exc:
        raise check.fail(key, str(exc)) from None


_LOG_DEFAULT = {"lr": True, **{k: True for k in TAU_PARAMS}}


def _search_param(check: _Checker, name: str, value: Any) -> Param:
    key = f"search.{name}"
    if name == "pooling":
        if isinstance(value, dict):
            check.known(value, ("choices",), key + ".")
            value = value.get("choices", [])
        if isinstance(value, list):
            if not value:
                raise check.fail(key, "is empty; list at least one pooling (cls, avg, cls_avg, max, last)")
            choices = [_pooling_value(check, v, f"{key}[{i}]") for i, v in enumerate(value)]
            if len(set(choices)) != len(choices):
                raise check.fail(key, "lists a pooling twice; remove the duplicate")
            return Param(name, "categorical", choices=tuple(choices)) if len(choices) > 1 else \
                Param(name, "fixed", value=choices[0])
        return Param(name, "fixed", value=_pooling_value(check, value, key))

    integer = name in ("epochs", "batch_size")
    minimum = {"epochs": 1, "batch_size": 2}.get(name)

    def num(v: Any, k: str) -> float:
        if integer:
            return float(check.integer(v, k, int(minimum or 0)))
        if name in TAU_PARAMS or name == "lr":
            return check.number(v, k, positive=True)
        if name == "warmup_ratio":
            return check.number(v, k, minimum=0.0, below=1.0)
        return check.number(v, k, minimum=0.0)  # weights

    def categorical(values: list, k: str) -> Param:
        if not values:
            raise check.fail(k, "is empty; list at least one value")
        parsed = [num(v, f"{k}[{i}]") for i, v in enumerate(values)]
        parsed = [int(v) for v in parsed] if integer else parsed
        if len(set(parsed)) != len(parsed):
            raise check.fail(k, "lists a value twice; remove the duplicate")
        return Param(name, "categorical", choices=tuple(parsed)) if len(parsed) > 1 else \
            Param(name, "fixed", value=parsed[0])

    def ranged(low: Any, high: Any, log: bool, step: Any, k: str) -> Param:
        lo, hi = num(low, f"{k}.low" if isinstance(value, dict) else f"{k}[0]"), \
            num(high, f"{k}.high" if isinstance(value, dict) else f"{k}[1]")
        if lo >= hi:
            raise check.fail(k, f"low {low:g} is not below high {high:g}; write [low, high] with low < high "
                                "(or a single number to fix the value)")
        if log and lo <= 0:
            raise check.fail(k, f"a log range needs low > 0, got {low:g}")
        if step is not None:
            step = check.number(step, f"{k}.step", positive=True)
            if log:
                raise check.fail(k, "step and log=true cannot be combined; drop one")
        return Param(name, "int" if integer else "float", low=lo, high=hi, log=log, step=step)

    if name == "batch_size" and isinstance(value, list):
        return categorical(value, key)
    if isinstance(value, dict):
        check.known(value, ("low", "high", "log", "step", "choices"), key + ".")
        if "choices" in value:
            if set(value) != {"choices"}:
                raise check.fail(key, "use either choices or low/high, not both")
            if not isinstance(value["choices"], list):
                raise check.fail(key + ".choices", f"must be a list, got {_show(value['choices'])}")
            return categorical(value["choices"], key + ".choices")
        if "low" not in value or "high" not in value:
            raise check.fail(key, "a range needs both low and high, e.g. { low = 5.0, high = 50.0 }")
        log = value.get("log", _LOG_DEFAULT.get(name, False))
        if not isinstance(log, bool):
            raise check.fail(key + ".log", f"must be true or false, got {_show(log)}")
        return ranged(value["low"], value["high"], log, value.get("step"), key)
    if isinstance(value, list):
        if len(value) != 2:
            raise check.fail(key, f"a list means a range [low, high] and needs 2 numbers, got {len(value)}; "
                                  "to choose between values write { choices = [...] }")
        return ranged(value[0], value[1], _LOG_DEFAULT.get(name, False), None, key)
    fixed = num(value, key)
    return Param(name, "fixed", value=int(fixed) if integer else fixed)


def _datasets(check: _Checker, value: Any, key: str, task: str, sources: dict[str, str]) -> list[str]:
    from tuner.data import CLASSIFICATION_DATASETS, STS_DATASETS, canonical_name
    from tuner.data.registry import suggest as suggest_name

    out = []
    for i, item in enumerate(check.string_list(value, key)):
        name = canonical_name(item)
        if name is not None:
            builtin_task = "sts" if name in STS_DATASETS else "classification"
            if builtin_task != task:
                wanted = ", ".join(STS_DATASETS if task == "sts" else CLASSIFICATION_DATASETS)
                raise check.fail(f"{key}[{i}]", f"'{item}' is {builtin_task} data but task is '{task}'; use {wanted}")
            out.append(name)
            continue
        path = check.local_path(item)
        if path is not None and path.is_file():
            out.append(item)
            sources[item] = str(path)
            continue
        close = suggest_name(item)
        hint = f"did you mean '{close}'? " if close else ""
        raise check.fail(f"{key}[{i}]", f"'{item}' is neither a built-in dataset nor an existing file; {hint}"
                                        f"use one of {', '.join(STS_DATASETS if task == 'sts' else CLASSIFICATION_DATASETS)} "
                                        f"or a path relative to {check.base}")
    if len(set(out)) != len(out):
        raise check.fail(key, "names the same dataset twice; remove the duplicate")
    return out


def parse_spec(raw: dict, path: Optional[Path] = None) -> StudySpec:
    """Validate a study dict (as read from TOML) -> :class:`StudySpec`; TunerError naming file + key."""
    check = _Checker(path)
    if not isinstance(raw, dict):
        raise TunerError(f"{check.label}: a study file must be a TOML table")
    check.known(raw, TOP_KEYS)
    for required in ("task", "models", "sampler"):
        if required not in raw:
            raise check.fail(required, "is missing; see studies/sts.toml for an example")

    name = check.string(raw.get("name", path.stem if path is not None else "study"), "name")
    if not _NAME_RE.match(name):
        raise check.fail("name", f"'{name}' may only use letters, digits, '_', '.' and '-'")
    description = check.string(raw.get("description", ""), "description")
    task = check.string(raw["task"], "task", TASKS)
    sampler = check.string(raw["sampler"], "sampler", SAMPLERS)
    protocol = check.string(raw.get("protocol", "seed" if sampler == "grid" else "standard"), "protocol", PROTOCOLS)
    seed = check.integer(raw.get("seed", 42), "seed", 0)
    max_retries = check.integer(raw.get("max_retries", 2), "max_retries", 0)

    # models
    models = check.string_list(raw["models"], "models")
    model_sources: dict[str, str] = {}
    for i, model in enumerate(models):
        if model.startswith((".", "/", "~")):
            folder = check.local_path(model)
            if folder is None or not (folder / "config.json").is_file():
                raise check.fail(f"models[{i}]", f"folder {folder} is not a model folder (no config.json); "
                                                 "give a Hugging Face id, all-MiniLM-L6-v2 or an existing model folder")
            model_sources[model] = str(folder)

    # data
    data_dir = raw.get("data_dir")
    if data_dir is not None:
        data_dir_path = check.local_path(check.string(data_dir, "data_dir"))
        if data_dir_path is None or not data_dir_path.is_dir():
            raise check.fail("data_dir", f"folder {data_dir_path} does not exist; point it at a folder with the "
                                         "layout of shared/data")
        data_dir = str(data_dir_path)
    data = check.table(raw, "data", DATA_KEYS)
    dataset_sources: dict[str, str] = {}
    train_sets: list[str] = []
    eval_sets: list[str] = []
    grid_sets: list[str] = []
    if sampler == "grid":
        if "train" in data or "eval" in data:
            raise check.fail("data.train" if "train" in data else "data.eval",
                             "grid studies train and score each cell on one dataset; list them in data.datasets")
        if "datasets" not in data:
            raise check.fail("data.datasets", "is missing; list the datasets of the grid, e.g. [\"stsb\", \"sickr\"]")
        grid_sets = _datasets(check, data["datasets"], "data.datasets", task, dataset_sources)
    else:
        if "datasets" in data:
            raise check.fail("data.datasets", f"is for grid studies; a {sampler} study uses data.train and data.eval")
        if "train" not in data:
            raise check.fail("data.train", "is missing; name the training dataset(s), e.g. [\"stsb\"]")
        train_sets = _datasets(check, data["train"], "data.train", task, dataset_sources)
        eval_sets = _datasets(check, data["eval"], "data.eval", task, dataset_sources) if "eval" in data \
            else list(train_sets)

    # budget
    b = check.table(raw, "budget", BUDGET_KEYS)
    budget = Budget(
        epochs=check.integer(b.get("epochs", 1), "budget.epochs", 1),
        max_steps=check.integer(b["max_steps"], "budget.max_steps", 1) if "max_steps" in b else None,
        max_train_examples=check.integer(b["max_train_examples"], "budget.max_train_examples", 2)
        if "max_train_examples" in b else None,
        max_eval_examples=check.integer(b["max_eval_examples"], "budget.max_eval_examples", 10)
        if "max_eval_examples" in b else None,
        eval_every=check.integer(b["eval_every"], "budget.eval_every", 1) if "eval_every" in b else None,
    )

    # train defaults
    t = check.table(raw, "train", TRAIN_KEYS)
    taus = {"cosent": 20.0, "ibn": 20.0, "angle": 1.0}
    if "taus" in t:
        if not isinstance(t["taus"], dict):
            raise check.fail("train.taus", f"must be a table like {{ cosent = 20.0, ibn = 20.0, angle = 1.0 }}, "
                                           f"got {_show(t['taus'])}")
        check.known(t["taus"], TAU_KEYS, "train.taus.")
        for k, v in t["taus"].items():
            taus[k] = check.number(v, f"train.taus.{k}", positive=True)
    train = TrainDefaults(
        batch_size=check.integer(t.get("batch_size", 32), "train.batch_size", 2),
        lr=check.number(t.get("lr", 2e-5), "train.lr", positive=True),
        max_seq_length=check.integer(t.get("max_seq_length", 128), "train.max_seq_length", 4),
        warmup_ratio=check.number(t.get("warmup_ratio", 0.1), "train.warmup_ratio", minimum=0.0, below=1.0),
        weight_decay=check.number(t.get("weight_decay", 0.01), "train.weight_decay", minimum=0.0),
        precision=check.string(t.get("precision", "auto"), "train.precision", PRECISIONS),
        ibn_positive_threshold=check.number(t.get("ibn_positive_threshold", 0.6), "train.ibn_positive_threshold",
                                            minimum=0.0),
        pooling=_pooling_value(check, t["pooling"], "train.pooling") if "pooling" in t else None,
        taus=taus,
    )
    if train.ibn_positive_threshold > 1:
        raise check.fail("train.ibn_positive_threshold", f"is {train.ibn_positive_threshold:g}; use a value in 0..1")

    # pruner
    pruner_raw = raw.get("pruner", "none")
    if isinstance(pruner_raw, dict):
        check.known(pruner_raw, PRUNER_KEYS, "pruner.")
        if "type" not in pruner_raw:
            raise check.fail("pruner.type", f"is missing; use one of {', '.join(PRUNERS)}")
        ptype = check.string(pruner_raw["type"], "pruner.type", PRUNERS)
        allowed = {"median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
                   "hyperband": ("min_resource", "max_resource", "reduction_factor"), "none": ()}[ptype]
        options = {}
        for k, v in pruner_raw.items():
            if k == "type":
                continue
            if k not in allowed:
                raise check.fail(f"pruner.{k}", f"does not apply to the {ptype} pruner; it takes {', '.join(allowed) or 'no options'}")
            options[k] = check.integer(v, f"pruner.{k}", 1 if k in ("interval_steps", "min_resource", "max_resource",
                                                                   "reduction_factor") else 0)
        if ptype == "hyperband" and options.get("reduction_factor", 3) < 2:
            raise check.fail("pruner.reduction_factor", "must be 2 or more")
        pruner = PrunerSpec(ptype, options)
    else:
        pruner = PrunerSpec(check.string(pruner_raw, "pruner", PRUNERS))
    if pruner.type != "none" and budget.eval_every is None:
        raise check.fail("budget.eval_every", f"is missing; the {pruner.type} pruner needs intermediate dev scores "
                                              "every N steps (e.g. eval_every = 50)")

    # search / grid
    search: dict[str, Param] = {}
    losses: list[str] = []
    grid_pooling: list[Any] = []
    n_trials: Optional[int] = None
    if sampler == "grid":
        if "search" in raw:
            raise check.fail("search", "is for tpe/random studies; a grid study lists [grid] losses (and pooling)")
        if "n_trials" in raw:
            raise check.fail("n_trials", "is not used by grid studies (one trial per cell); remove it")
        g = check.table(raw, "grid", GRID_KEYS)
        value = g.get("losses", "all")
        if value == "all":
            losses = list(FINETUNE_ROWS)
        else:
            losses = check.string_list(value, "grid.losses", allow_str=False)
            for i, row in enumerate(losses):
                norm = "+".join(sorted(row.lower().replace(" ", "").split("+"),
                                       key=lambda x: ("cosent", "ibn", "angle").index(x) if x in ("cosent", "ibn", "angle") else 9))
                if norm not in FINETUNE_ROWS:
                    raise check.fail(f"grid.losses[{i}]", f"'{row}' is not a loss row; use \"all\" or rows from "
                                                          f"{', '.join(FINETUNE_ROWS)}")
                losses[i] = norm
            if len(set(losses)) != len(losses):
                raise check.fail("grid.losses", "lists a row twice; remove the duplicate")
        if "pooling" in g:
            pv = g["pooling"]
            pv = pv if isinstance(pv, list) else [pv]
            if not pv:
                raise check.fail("grid.pooling", "is empty; list one or more poolings or remove the key")
            grid_pooling = [_pooling_value(check, v, f"grid.pooling[{i}]") for i, v in enumerate(pv)]
            if len(set(grid_pooling)) != len(grid_pooling):
                raise check.fail("grid.pooling", "lists a pooling twice; remove the duplicate")
        if not losses or not grid_sets or not models:
            raise check.fail("grid", "the grid is empty; list models, grid.losses and data.datasets")
    else:
        if "grid" in raw:
            raise check.fail("grid", f"is for grid studies; a {sampler} study describes its space in [search]")
        if "n_trials" not in raw:
            raise check.fail("n_trials", f"is missing; a {sampler} study needs the number of trials, e.g. n_trials = 40")
        n_trials = check.integer(raw["n_trials"], "n_trials", 1)
        s = raw.get("search")
        if not isinstance(s, dict) or not s:
            raise check.fail("search", "is missing or empty; list what to search, e.g. w_cosent = [0.0, 1.0]")
        check.known(s, SEARCH_KEYS, "search.")
        for k in SEARCH_KEYS:  # fixed order: the same params in the same order every trial
            if k in s:
                search[k] = _search_param(check, k, s[k])
        if not any(p.kind != "fixed" for p in search.values()) and len(models) == 1:
            raise check.fail("search", "fixes every value, so there is nothing to search; give at least one range "
                                       "or choice")

    return StudySpec(name=name, path=path, raw=raw, description=description, task=task, models=models,
                     model_sources=model_sources, protocol=protocol, sampler=sampler, pruner=pruner,
                     n_trials=n_trials, seed=seed, max_retries=max_retries, data_dir=data_dir,
                     train_datasets=train_sets, eval_datasets=eval_sets, grid_datasets=grid_sets, losses=losses,
                     grid_pooling=grid_pooling, budget=budget, train=train, search=search,
                     dataset_sources=dataset_sources)


def load_spec(name_or_path: "str | os.PathLike") -> StudySpec:
    """Find, read and validate a study file (``sts`` or ``path/to/file.toml``)."""
    path = find_study_file(name_or_path)
    label = _label(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TunerError(f"{label}: not valid TOML: {exc}; fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunerError(f"{label}: cannot read the file ({exc}); check its permissions and encoding") from None
    return parse_spec(raw, path)


def cell_key(params: dict[str, Any]) -> str:
    """A stable key for a grid cell's params (dedupe across workers and machines)."""
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)
