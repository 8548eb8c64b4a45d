"""Study files: ``studies/*.toml`` -> a validated :class:`~tuner.study.spec.StudySpec`.

A study file is parsed with :mod:`tomllib` (never executed) and checked completely before
anything touches a storage; every problem is one :class:`~tuner.errors.TunerError` line naming
the file and the key. ``[train]`` and ``[budget]`` are the fields of
:class:`~tuner.config.RunConfig` (its validation names the bad key); ``[search]`` is parsed by
:mod:`tuner.study.space`.

Layout (see ``studies/sts.toml`` for a commented example)::

    name = "sts"                      # optional; default: the file name
    description = "..."
    task = "sts"                      # or "classification", or "nli": train on NLI, score STS
                                      # (protocol "nli-transfer", see studies/nli-grid.toml)
    models = ["all-MiniLM-L6-v2"]     # hub ids, bundled names or folders (relative to this file)
    protocol = "standard"             # or "seed" (70/30 of the official table, dev from the 70)
    sampler = "tpe"                   # tpe | random | grid, or a [sampler] table:
                                      # { type = "tpe", multivariate = true, group = true,
                                      #   n_startup_trials = 10, constant_liar = true }
    pruner = "median"                 # none | median | hyperband, or a [pruner] table
    n_trials = 40                     # tpe/random only: trials in total, over all workers
    seed = 42
    repeats = 1                       # seeds per grid cell (seed, seed+1, ...: a grid axis) or per
                                      # tpe/random trial (each trial trains them all; value = mean dev)
    max_retries = 2                   # re-runs of a failed cell / of a trial whose worker died
    warm_start = { study = "sts-quick", k = 5 }   # tpe/random: the best k complete trials of that
                                      # study (same storage) are this study's first trials
    data_dir = "../shared/data"       # optional (relative to this file)

    [data]
    train = ["stsb"]                  # tpe/random: what every trial trains on ...
    eval = ["stsb"]                   # ... and is scored on (default: train)
    datasets = ["sts12", "stsb"]      # grid: one cell per dataset (train = eval)
                                      # task nli: train = NLI sets (grid: one cell each), eval = STS
                                      # sets (default: all seven), dev = STS-B dev

    [budget]                          # per trial: any budget field of RunConfig
    epochs = 1
    max_steps = 500                   # optional, overrides epochs
    max_train_examples = 20000        # optional subsample of the training pairs
    max_eval_examples = 1000          # optional subsample of every dev/test split
    eval_every = 100                  # steps between intermediate dev scores (pruning)

    [train]                           # fixed settings: any train field of RunConfig
    batch_size = 32
    lr = 2e-5
    max_seq_length = 128
    pooling = "cls"                   # default: the model's own pooling
    seed = 42                         # optional: every trial's training seed (default: the study's
                                      # seed, which also seeds the sampler)
    taus = { cosent = 30.0 }          # optional: a loss left out keeps its default (tuner.losses.registry)

    [search]                          # tpe/random: what the sampler chooses
    losses = "any"                    # which losses are on: "any" (each on/off), a list of
                                      # combinations ["cosent", "cosent+ibn"], or one "cosent+angle"
    w_cosent = [0.1, 1.0]             # its weight when cosent is on (> 0; default 1)
    tau_cosent = [5.0, 50.0]          # taus and lr are sampled on a log scale
    pooling = ["cls", "avg"]          # pooling and batch_size: a list is a choice
    lr = { low = 1e-5, high = 1e-4, log = true }
    epochs = [1, 3]

    [grid]                            # grid: cells = models x losses x datasets (x pooling)
    losses = "all"                    # the seed's 8 rows, or a list: cos_mse, cosent, ibn+angle, ...
    pooling = ["cls"]                 # optional; two or more make pooling a grid axis
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping, Optional

from tuner.config import ConfigError, RunConfig, section_fields
from tuner.errors import TunerError
from tuner.losses.registry import SEED_FINETUNE_ROWS, combo_key, parse_combo
from tuner.study.checks import Checker, label_of, pooling_value, show
from tuner.study.files import find_study_file
from tuner.study.shape import restrict_to_shape
from tuner.study.space import parse_search
from tuner.study.spec import PrunerSpec, StudySpec, WarmStart

TASKS = ("sts", "classification", "nli")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
TOP_KEYS = ("name", "description", "task", "models", "protocol", "sampler", "pruner", "n_trials", "seed",
            "repeats", "max_retries", "data_dir", "data", "budget", "train", "search", "grid", "warm_start")
DATA_KEYS = ("train", "eval", "datasets")
GRID_KEYS = ("losses", "pooling")
SAMPLER_OPTIONS = {"tpe": {"multivariate": bool, "group": bool, "constant_liar": bool, "n_startup_trials": int},
                   "random": {}, "grid": {}}
PRUNER_OPTIONS = {"median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
                  "hyperband": ("min_resource", "max_resource", "reduction_factor"), "none": ()}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def load_spec(name_or_path: "str | os.PathLike") -> StudySpec:
    """Find, read and validate a study file (``sts`` or ``path/to/file.toml``)."""
    path = find_study_file(name_or_path)
    label = label_of(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TunerError(f"{label}: not valid TOML: {exc}; fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TunerError(f"{label}: cannot read the file ({exc}); check its permissions and encoding") from None
    return parse_spec(raw, path)


def parse_spec(raw: dict, path: Optional[Path] = None) -> StudySpec:
    """Validate a study dict (as read from TOML) -> :class:`StudySpec`; TunerError naming file + key."""
    check = Checker(path)
    if not isinstance(raw, dict):
        raise TunerError(f"{check.label}: a study file must be a TOML table")
    check.known(raw, TOP_KEYS)
    for required in ("task", "models", "sampler"):
        if required not in raw:
            raise check.fail(required, "is missing; see studies/sts.toml for an example")
    from tuner.data.splits import ALL_PROTOCOLS, NLI_TRANSFER

    name = check.string(raw.get("name", path.stem if path is not None else "study"), "name")
    if not _NAME_RE.match(name):
        raise check.fail("name", f"'{name}' may only use letters, digits, '_', '.' and '-'")
    task = check.string(raw["task"], "task", TASKS)
    sampler, sampler_options = _sampler(check, raw["sampler"])
    default_protocol = NLI_TRANSFER if task == "nli" else "seed" if sampler == "grid" else "standard"
    protocol = check.string(raw.get("protocol", default_protocol), "protocol", ALL_PROTOCOLS)
    if (task == "nli") != (protocol == NLI_TRANSFER):
        raise check.fail("protocol", f"'{protocol}' does not go with task '{task}': task nli (train on NLI, score STS) "
                                     f"is protocol {NLI_TRANSFER}, the other tasks use {', '.join(ALL_PROTOCOLS[:-1])}")
    seed = check.integer(raw.get("seed", 42), "seed", 0)
    spec = StudySpec(
        name=name, path=path, raw=raw, description=check.string(raw.get("description", ""), "description"),
        task=task, models=[], protocol=protocol, sampler=sampler, sampler_options=sampler_options,
        pruner=PrunerSpec(), n_trials=None, seed=seed,
        max_retries=check.integer(raw.get("max_retries", 2), "max_retries", 0),
        repeats=check.integer(raw.get("repeats", 1), "repeats", 1),
        base=_base_config(check, raw, task, protocol, seed))
    spec.models, spec.model_sources = _models(check, raw["models"])
    _data(check, raw, spec)
    spec.pruner = _pruner(check, raw.get("pruner", "none"))
    if spec.pruner.type != "none" and spec.base.eval_every is None:
        raise check.fail("budget.eval_every", f"is missing; the {spec.pruner.type} pruner needs intermediate dev "
                                              "scores every N steps (e.g. eval_every = 50)")
    if sampler == "grid":
        _grid(check, raw, spec)
    else:
        _search(check, raw, spec)
        restrict_to_shape(spec)
    if "warm_start" in raw:
        spec.warm_start = _warm_start(check, raw["warm_start"], spec)
    return spec


def _warm_start(check: Checker, value: Any, spec: StudySpec) -> WarmStart:
    """``warm_start = { study = "NAME", k = 5 }`` (or just ``"NAME"``)."""
    if spec.is_grid:
        raise check.fail("warm_start", "a grid study runs every cell anyway, so there is nothing to warm-start; "
                                       "remove the key (warm starts are for tpe/random studies)")
    if isinstance(value, str):
        value = {"study": value}
    if not isinstance(value, dict):
        raise check.fail("warm_start", f"must be a table like {{ study = \"sts-quick\", k = 5 }}, got {show(value)}")
    check.known(value, ("study", "k"), "warm_start.")
    if "study" not in value:
        raise check.fail("warm_start.study", "is missing; name a study in the same storage, e.g. study = \"sts-quick\"")
    study = check.string(value["study"], "warm_start.study")
    if not study:
        raise check.fail("warm_start.study", "is empty; name a study in the same storage")
    if study == spec.name:
        raise check.fail("warm_start.study", f"'{study}' is this study itself; name another study")
    return WarmStart(study, check.integer(value.get("k", 5), "warm_start.k", 1))


def _base_config(check: Checker, raw: dict, task: str, protocol: str, seed: int) -> RunConfig:
    """``[train]`` + ``[budget]`` + data_dir -> the RunConfig every trial starts from."""
    values: dict[str, Any] = {"task": task, "protocol": protocol, "seed": seed}
    for section in ("train", "budget"):
        # [train] seed: the training seed of every trial, apart from the sampler's (default: the study's seed)
        table = check.table(raw, section, section_fields(section) + (("seed",) if section == "train" else ()))
        for key, value in table.items():
            if key == "pooling":
                value = pooling_value(check, value, f"{section}.pooling")
            if key in ("weights", "taus") and not isinstance(value, dict):
                raise check.fail(f"{section}.{key}", f"must be a table like {{ cosent = 20.0, ibn = 20.0 }}, "
                                                     f"got {show(value)}")
            values[key] = value
    if "data_dir" in raw:
        folder = check.local_path(check.string(raw["data_dir"], "data_dir"))
        if folder is None or not folder.is_dir():
            raise check.fail("data_dir", f"folder {folder} does not exist; point it at a folder with the "
                                         "layout of shared/data")
        values["data_dir"] = str(folder)
    try:
        return RunConfig(**values)
    except ConfigError as exc:
        section = next((s for s in ("train", "budget") if exc.key.split(".")[0] in section_fields(s)), "train")
        raise check.fail(f"{section}.{exc.key}", exc.problem) from None


def _models(check: Checker, value: Any) -> tuple[list[str], dict[str, str]]:
    models = check.string_list(value, "models")
    sources: dict[str, str] = {}
    for i, model in enumerate(models):
        if model.startswith((".", "/", "~")):
            folder = check.local_path(model)
            if folder is None or not (folder / "config.json").is_file():
                raise check.fail(f"models[{i}]", f"folder {folder} is not a model folder (no config.json); "
                                                 "give a Hugging Face id, all-MiniLM-L6-v2 or an existing model folder")
            sources[model] = str(folder)
    return models, sources


def _data(check: Checker, raw: dict, spec: StudySpec) -> None:
    data = check.table(raw, "data", DATA_KEYS)
    sources = spec.dataset_sources
    if spec.task == "nli":
        _nli_data(check, data, spec)
        return
    if spec.is_grid:
        if "train" in data or "eval" in data:
            raise check.fail("data.train" if "train" in data else "data.eval",
                             "grid studies train and score each cell on one dataset; list them in data.datasets")
        if "datasets" not in data:
            raise check.fail("data.datasets", "is missing; list the datasets of the grid, e.g. [\"stsb\", \"sickr\"]")
        spec.grid_datasets = _datasets(check, data["datasets"], "data.datasets", spec.task, sources)
        return
    if "datasets" in data:
        raise check.fail("data.datasets", f"is for grid studies; a {spec.sampler} study uses data.train and data.eval")
    if "train" not in data:
        raise check.fail("data.train", "is missing; name the training dataset(s), e.g. [\"stsb\"]")
    spec.train_datasets = _datasets(check, data["train"], "data.train", spec.task, sources)
    spec.eval_datasets = _datasets(check, data["eval"], "data.eval", spec.task, sources, retrieval=True) \
        if "eval" in data \
        else list(spec.train_datasets)


def _nli_data(check: Checker, data: dict, spec: StudySpec) -> None:
    """Task nli: ``train`` NLI sets (a grid's dataset axis), ``eval`` STS sets (default: the seven).

    The STS sets go to ``spec.transfer_eval``, not ``eval_datasets``: those and the grid/train sets
    are loaded as the study's task before the first trial, and STS sets are not NLI data."""
    from tuner.data.splits import NLI_TRANSFER_EVAL

    if "datasets" in data:
        raise check.fail("data.datasets", "task nli lists its NLI training sets in data.train (a grid makes one cell "
                                          "per set) and the STS sets it is scored on in data.eval")
    if "train" not in data:
        raise check.fail("data.train", "is missing; name the NLI training set(s), e.g. [\"snli\"]")
    train = _datasets(check, data["train"], "data.train", "nli", spec.dataset_sources)
    spec.transfer_eval = _datasets(check, data["eval"], "data.eval", "sts", spec.dataset_sources, retrieval=True) \
        if "eval" in data \
        else list(NLI_TRANSFER_EVAL)
    if spec.is_grid:
        spec.grid_datasets = train
    else:
        spec.train_datasets = train


def _datasets(check: Checker, value: Any, key: str, task: str, sources: dict[str, str],
              retrieval: bool = False) -> list[str]:
    """Built-in names and files of ``task``; with ``retrieval`` (an eval list) also BEIR folders."""
    from tuner.data import CLASSIFICATION_DATASETS, STS_DATASETS, canonical_name
    from tuner.data.beir import is_beir_folder
    from tuner.data.registry import NLI_DATASETS, task_of
    from tuner.data.registry import suggest as suggest_name

    known = {"sts": STS_DATASETS, "nli": NLI_DATASETS}.get(task, CLASSIFICATION_DATASETS)
    out = []
    for i, item in enumerate(check.string_list(value, key)):
        name = canonical_name(item)
        if name is not None:
            builtin_task = task_of(name)
            if builtin_task != task:
                raise check.fail(f"{key}[{i}]", f"'{item}' is {builtin_task} data but {key} takes {task} data; "
                                                f"use {', '.join(known)}")
            out.append(name)
            continue
        path = check.local_path(item)
        if path is not None and (path.is_file() or retrieval and path.is_dir() and is_beir_folder(path)):
            out.append(item)
            sources[item] = str(path)
            continue
        close = suggest_name(item)
        hint = f"did you mean '{close}'? " if close else ""
        raise check.fail(f"{key}[{i}]", f"'{item}' is neither a built-in dataset nor an existing file; {hint}"
                                        f"use one of {', '.join(known)} or a path relative to {check.base}")
    if len(set(out)) != len(out):
        raise check.fail(key, "names the same dataset twice; remove the duplicate")
    return out


def _typed_table(check: Checker, value: dict, key: str, choices: tuple[str, ...],
                 options_of: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A ``[sampler]`` / ``[pruner]`` table: its ``type`` and the options that type takes (unchecked values)."""
    check.known(value, ("type", *sorted({k for keys in options_of.values() for k in keys})), f"{key}.")
    if "type" not in value:
        raise check.fail(f"{key}.type", f"is missing; use one of {', '.join(choices)}")
    kind = check.string(value["type"], f"{key}.type", choices)
    allowed = options_of[kind]
    for k in value:
        if k != "type" and k not in allowed:
            raise check.fail(f"{key}.{k}", f"does not apply to the {kind} {key}; it takes "
                                           f"{', '.join(allowed) or 'no options'}")
    return kind, {k: v for k, v in value.items() if k != "type"}


def _sampler(check: Checker, value: Any) -> tuple[str, dict[str, Any]]:
    """``sampler = "tpe"`` or ``[sampler] type = "tpe"`` plus TPE options (see SAMPLER_OPTIONS)."""
    if not isinstance(value, dict):
        return check.string(value, "sampler", SAMPLERS), {}
    stype, raw = _typed_table(check, value, "sampler", SAMPLERS, SAMPLER_OPTIONS)
    options: dict[str, Any] = {}
    for k, v in raw.items():
        if SAMPLER_OPTIONS[stype][k] is bool:
            if not isinstance(v, bool):
                raise check.fail(f"sampler.{k}", f"must be true or false, not {v!r}")
            options[k] = v
        else:
            options[k] = check.integer(v, f"sampler.{k}", 0)
    if options.get("group") and options.get("multivariate") is False:
        raise check.fail("sampler.group", "needs multivariate = true (univariate TPE samples each parameter alone)")
    return stype, options


def _pruner(check: Checker, value: Any) -> PrunerSpec:
    if not isinstance(value, dict):
        return PrunerSpec(check.string(value, "pruner", PRUNERS))
    ptype, raw = _typed_table(check, value, "pruner", PRUNERS, PRUNER_OPTIONS)
    options = {}
    for k, v in raw.items():
        minimum = 1 if k in ("interval_steps", "min_resource", "max_resource", "reduction_factor") else 0
        options[k] = check.integer(v, f"pruner.{k}", minimum)
    if ptype == "hyperband" and options.get("reduction_factor", 3) < 2:
        raise check.fail("pruner.reduction_factor", "must be 2 or more")
    return PrunerSpec(ptype, options)


def _grid(check: Checker, raw: dict, spec: StudySpec) -> None:
    if "search" in raw:
        raise check.fail("search", "is for tpe/random studies; a grid study lists [grid] losses (and pooling)")
    if "n_trials" in raw:
        raise check.fail("n_trials", "is not used by grid studies (one trial per cell); remove it")
    g = check.table(raw, "grid", GRID_KEYS)
    value = g.get("losses", "all")
    if value == "all":
        spec.losses = list(SEED_FINETUNE_ROWS)
    else:
        rows = check.string_list(value, "grid.losses", allow_str=False)
        for i, row in enumerate(rows):
            try:
                rows[i] = combo_key(parse_combo(row))
            except ValueError as exc:
                raise check.fail(f"grid.losses[{i}]", f"{exc}; use \"all\" (the seed's rows) or combinations "
                                                      f"like {', '.join(SEED_FINETUNE_ROWS[:4])}") from None
        if len(set(rows)) != len(rows):
            raise check.fail("grid.losses", "lists a row twice; remove the duplicate")
        spec.losses = rows
    if "pooling" in g:
        values = g["pooling"] if isinstance(g["pooling"], list) else [g["pooling"]]
        if not values:
            raise check.fail("grid.pooling", "is empty; list one or more poolings or remove the key")
        spec.grid_pooling = [pooling_value(check, v, f"grid.pooling[{i}]") for i, v in enumerate(values)]
        if len(set(spec.grid_pooling)) != len(spec.grid_pooling):
            raise check.fail("grid.pooling", "lists a pooling twice; remove the duplicate")
    if not spec.losses or not spec.grid_datasets or not spec.models:
        raise check.fail("grid", "the grid is empty; list models, grid.losses and data.datasets")


def _search(check: Checker, raw: dict, spec: StudySpec) -> None:
    if "grid" in raw:
        raise check.fail("grid", f"is for grid studies; a {spec.sampler} study describes its space in [search]")
    if "n_trials" not in raw:
        raise check.fail("n_trials", f"is missing; a {spec.sampler} study needs the number of trials, e.g. n_trials = 40")
    spec.n_trials = check.integer(raw["n_trials"], "n_trials", 1)
    spec.search = parse_search(check, raw.get("search"), spec.models) if raw.get("search") is not None \
        else parse_search(check, {}, spec.models)
