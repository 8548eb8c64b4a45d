"""The Python API: the same operations as the CLI, returning pandas / Optuna objects.

This is the core the CLI is a thin layer over: ``tuner finetune`` builds a
:class:`~tuner.config.RunConfig` from its flags and calls :func:`finetune`; ``optimize`` and
``status`` call :mod:`tuner.service._orchestrate` and :mod:`tuner.service._status` as :func:`optimize` and
:func:`status` do. Nothing here goes through the argument parser. Importing this module is
light: torch, pandas and Optuna load when a function needs them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from tuner.config import RunConfig, field_names
from tuner.data.mining import MINING_SEED, MiningSettings, check_mining, read_corpus
from tuner.data.shapes import parse_columns
from tuner.errors import TunerError
from tuner.service._confirm import run_confirm
from tuner.service._confirm_plan import BASELINES
from tuner.service._orchestrate import exit_code, quiet_log, run_study, stderr_log
from tuner.service._status import read_status
from tuner.storage import resolve_url

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from tuner.engine._mining import Mined
    from tuner.engine._run import DataSpec, FinetuneOutcome

#: What ``train=``/``eval=`` record in the config for data given as a DataFrame.
DATAFRAME_PLACEHOLDER = "<DataFrame>"
_EXPLICIT = ("model", "train", "eval", "weights", "taus")


def evaluate(model: Any = "all-MiniLM-L6-v2", datasets: "DataSpec | Sequence[DataSpec]" = "stsb", *,
             pooling: "str | int | None" = None, split: str = "test", protocol: Optional[str] = None,
             classification_protocol: Optional[str] = None, data_dir: "str | os.PathLike | None" = None,
             batch_size: int = 64, max_seq_length: int = 128, device: Optional[str] = None) -> "pd.DataFrame":
    """Score a model (hub id, local folder or a loaded :class:`tuner.models._encoder.Encoder`) on datasets.

    ``datasets``: built-in names (``"stsb"``, ``"sts12,sts13"``, ``"MR"``…), file paths or
    DataFrames with ``sentence1, sentence2, score`` (STS) or ``sentence, label`` (classification).
    Returns one row per dataset: ``dataset, task, split, metric, score, pearson, n, protocol, …``
    (scores in 0..1). Same as ``tuner evaluate``.
    """
    from tuner.engine._run import evaluate_model

    return evaluate_model(model, datasets, pooling=pooling, split=split, protocol=protocol,
                          classification_protocol=classification_protocol, data_dir=data_dir,
                          batch_size=batch_size, max_seq_length=max_seq_length, device=device)


def run_config(model: Any = None, train: Any = None, eval: Any = None, *,
               weights: Optional[Mapping[str, float]] = None, taus: Optional[Mapping[str, float]] = None,
               config: "RunConfig | Mapping[str, Any] | None" = None, **settings: Any) -> RunConfig:
    """The :class:`RunConfig` that :func:`finetune` runs for these arguments (nothing is loaded).

    Starts from ``config`` (a RunConfig or its dict; default :class:`RunConfig()`); arguments that
    are given replace its fields. ``weights`` replaces the weights (missing losses = 0 = off);
    ``taus`` is merged over the config's temperatures. ``settings``: any other RunConfig field;
    an unknown name is a one-line :class:`TunerError` listing the valid ones. Data given as a
    DataFrame or loaded dataset is recorded as :data:`DATAFRAME_PLACEHOLDER` (or its file path /
    built-in name).
    """
    unknown = sorted(set(settings) - set(field_names()))
    if unknown:
        valid = ", ".join(n for n in field_names() if n not in _EXPLICIT)
        raise TunerError(f"finetune: unknown setting(s) {', '.join(unknown)}; use any of {valid}")
    base = _base_config(config)
    changes: dict[str, Any] = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in settings.items()}
    if model is not None:
        changes["model"] = os.fspath(model) if isinstance(model, (str, os.PathLike)) else str(model.name)
    if train is not None:
        changes["train"] = _data_names(train)
    if eval is not None:
        changes["eval"] = _data_names(eval)
    if weights is not None:
        changes["weights"] = dict(weights)
    if taus is not None:
        changes["taus"] = {**base.taus, **dict(taus)}
    return base.replace(**changes)


def finetune(model: Any = None, train: "DataSpec | Sequence[DataSpec] | None" = None,
             eval: "DataSpec | Sequence[DataSpec] | None" = None, *,
             weights: Optional[Mapping[str, float]] = None, taus: Optional[Mapping[str, float]] = None,
             output: "str | os.PathLike | None" = None, device: Optional[str] = None, progress: bool = True,
             config: "RunConfig | Mapping[str, Any] | None" = None, **settings: Any) -> "FinetuneOutcome":
    """Fine-tune ``model`` with ``sum(weights[k] * loss_k)`` and score dev and test. Same as ``tuner finetune``.

    ``model``: hub id, local folder or a loaded :class:`tuner.models._encoder.Encoder` (default: the
    config's, ``all-MiniLM-L6-v2``). ``train``/``eval``: built-in names, files or DataFrames
    (default: the config's; ``eval`` defaults to the training sets). ``weights`` keys: any
    registered loss (``cos_mse, cosent, ibn, angle``; all 0 = cosine-MSE alone). ``config``: a
    :class:`RunConfig` (or its dict, e.g. ``best_finetune.json``'s) to start from. ``settings``:
    any other RunConfig field (``pooling, protocol, data_dir, lr, epochs, max_steps, batch_size,
    max_seq_length, max_train_examples, seed, …``); see :func:`run_config`.

    Returns a :class:`tuner.engine._run.FinetuneOutcome`: ``.scores["dev"|"test"][dataset]``,
    ``.dev_score``, ``.test_score``, ``.config`` (the run as it ran), ``.output`` (saved folder
    when ``output`` is given), ``.train``.
    """
    from tuner.engine._run import run_finetune

    resolved = run_config(model, train, eval, weights=weights, taus=taus, config=config, **settings)
    return run_finetune(resolved, model=model if _is_encoder(model) else None,
                        train=train if _has_objects(train) else None, eval=eval if _has_objects(eval) else None,
                        output=output, device=device, progress=progress)


def mine(model: Any = "all-MiniLM-L6-v2", train: Any = None, out: "str | os.PathLike | None" = None, *,
         corpus: "str | os.PathLike | Sequence[str] | None" = None, columns: "Mapping[str, str] | str | None" = None,
         num_negatives: int = 1, range_min: int = 0, range_max: Optional[int] = None, margin: Optional[float] = None,
         relative_margin: Optional[float] = None, max_score: Optional[float] = None,
         min_score: Optional[float] = None, sampling: str = "top", seed: int = MINING_SEED, batch_size: int = 64,
         max_seq_length: int = 128, pooling: "str | int | None" = None, prompt: Optional[str] = None,
         device: Optional[str] = None, data_dir: "str | os.PathLike | None" = None, cache: bool = True,
         cache_dir: "str | os.PathLike | None" = None, scores: bool = False) -> "Mined":
    """Mine hard negatives for (anchor, positive) pairs with ``model``. Same as ``tuner mine``.

    ``train``: a pairs file or DataFrame (``columns`` renames yours: ``{"anchor": "question", ...}`` or
    ``"anchor=question,positive=answer"``); ``corpus``: extra candidate texts (a list, a ``.txt`` file
    or a table with a ``text`` column). The options mean what sentence-transformers' ``mine_hard_negatives``
    options mean (:mod:`tuner.data.mining`). The result is cached by model, texts and settings
    (``$TUNER_CACHE/mined``; ``cache=False`` skips it). ``out`` (.parquet, .csv, .tsv, .jsonl) gets the
    rows with at least one negative: ``anchor, positive, negative, negative_2, ...`` (+ ``score_*`` with
    ``scores``). Returns a :class:`tuner.engine._mining.Mined`: ``.triplets()``, ``.stats``, ``.frame``.
    """
    from tuner.engine._mining import check_output, load_pairs, mine_hard_negatives, write_table
    from tuner.models._encoder import load_encoder

    settings = check_mining(MiningSettings(num_negatives, range_min, range_max, margin, relative_margin, max_score,
                                           min_score, sampling, seed)).resolved()
    target = check_output(out) if out is not None else None
    mapping = parse_columns(columns) if isinstance(columns, str) else (dict(columns) if columns else None)
    pairs, _ = load_pairs(train, mapping, data_dir)
    texts = read_corpus(corpus) if isinstance(corpus, (str, os.PathLike)) else corpus
    encoder = model if _is_encoder(model) else load_encoder(model, pooling=pooling, device=device, prompt=prompt)
    mined = mine_hard_negatives(encoder, pairs, settings, corpus=texts, batch_size=batch_size,
                                max_seq_length=max_seq_length, cache_dir=cache_dir, cache=cache)
    if target is not None:
        write_table(mined.triplets(scores), target)
    return mined


def load_run_config(path: "str | os.PathLike") -> RunConfig:
    """The :class:`RunConfig` in a JSON file: its ``"config"`` object when it has one (a trial
    record, ``tuner.json`` beside a saved model, ``best_finetune.json``), else the whole object.
    Keys this version does not know are ignored."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise TunerError(f"cannot read run config {file}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise TunerError(f"run config {file} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise TunerError(f"run config {file} must hold a JSON object, got {type(data).__name__}")
    try:
        return RunConfig.from_dict(data, strict=False)
    except TunerError as exc:
        raise TunerError(f"run config {file}: {exc}") from None


def optimize(study: Any, storage: Optional[str] = None, workers: Optional[int] = 1, n_trials: Optional[int] = None,
             *, study_name: Optional[str] = None, gpus: Optional[str] = None,
             artifacts: "str | os.PathLike | bool | None" = None, retry_failed: bool = False,
             heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
             quiet: bool = False) -> Any:
    """Run (or resume) a study and return it as an ``optuna.Study``. Same as ``tuner optimize``.

    ``study``: a name from the studies folder (``"sts-quick"``), a path to a study file, or a
    :class:`tuner.study.StudySpec` (e.g. ``tuner.parse_spec({...})``). ``n_trials`` overrides the
    file's (TPE/random studies). The study lives in ``storage`` (default ``$TUNER_STORAGE`` or
    ``sqlite:///tuner.db``) and can be resumed. ``artifacts=False`` writes no trial artifacts;
    ``quiet`` drops the progress lines. Raises :class:`TunerError` when the study did not finish.
    """
    import optuna


    url = resolve_url(storage)
    st = run_study(study, url, workers=workers, gpus=gpus, study_name=study_name, n_trials=n_trials,
                   artifacts=artifacts, retry_failed=retry_failed, heartbeat_interval=heartbeat_interval,
                   grace_period=grace_period, log=quiet_log if quiet else stderr_log)
    code = exit_code(st)
    if code != 0:
        raise TunerError(f"study '{st['study']}' did not finish (workers exited with {st['worker_exit_codes']}); "
                         f"see python -m tuner status --study {st['study']}")
    return optuna.load_study(study_name=st["study"], storage=url)


def status(study: Any, storage: Optional[str] = None, study_name: Optional[str] = None) -> dict[str, Any]:
    """A study's progress as a dict: ``counts`` by trial state, ``progress``, ``grid`` coverage,
    ``best`` trial, ``running`` trials, ``zero_shot`` scores. Same as ``tuner status --json``."""
    return read_status(study, storage, study_name)


def export(study: Any, out: "str | os.PathLike", storage: Optional[str] = None, split: str = "test") -> Any:
    """Write the results matrix, tables and plots of ``study`` (an ``optuna.Study`` or a study name
    in ``storage``) into ``out``. Returns a :class:`tuner.exporter.ExportResult` (``.matrix``,
    ``.files``, ``.plots``). Same as ``tuner export``."""
    from tuner.exporter import export_study

    return export_study(study, out, split=split, storage_url=storage)


def confirm(study: str, storage: Optional[str] = None, *, top: int, seeds: Sequence[int],
            budget: Optional[Mapping[str, Any]] = None, baselines: Optional[Sequence[str]] = None,
            study_name: Optional[str] = None, dataset: Optional[str] = None, on: Optional[str] = None,
            model: Optional[str] = None, device: Optional[str] = None, out: "str | os.PathLike | None" = None,
            save_model: bool = False,
            artifacts: "str | os.PathLike | None" = None, heartbeat_interval: Optional[int] = None,
            grace_period: Optional[int] = None, run: bool = True, quiet: bool = False) -> dict[str, Any]:
    """Re-run the top ``top`` configurations of ``study`` with every seed in ``seeds``, beside the
    baselines (default ``zero-shot`` and ``st-example``), as the study ``<study>-confirm`` of the same
    storage (resumable, shared by every machine that runs it), and return the report: ``configs``,
    ``baselines`` (each with ``seeds``, ``dev``/``test`` mean, std and 95% interval), ``comparisons``
    (paired over seeds x test items, Holm), ``winner`` (or None and the ``tie``), ``budget``,
    ``proxy``. ``budget``: ``epochs``, ``max_steps``, ``max_train_examples``, ``max_eval_examples``
    (default: full files, each configuration's own epochs). ``on``: train and score everything on this
    dataset instead (``<study>-confirm-on-<on>``: does the answer transfer?); ``model``: from this model
    instead (``<study>-confirm-with-<model>``). Same as ``tuner confirm``;
    see docs/confirm.md."""
    return run_confirm(study, storage, top=top, seeds=seeds, budget=budget,
                       baselines=BASELINES if baselines is None else baselines, study_name=study_name, dataset=dataset,
                       on=on, model=model, device=device, out=out, save_model=save_model, artifacts=artifacts,
                       heartbeat_interval=heartbeat_interval, grace_period=grace_period, run=run,
                       log=quiet_log if quiet else stderr_log)


def plot_matrix(matrix: Any, labels: Optional[Mapping[str, Any]] = None, out: "str | os.PathLike" = "plots") -> list:
    """Plot a results matrix (array of shape models x loss rows x datasets, or a path to a .npy)
    with ``labels`` (``{"models": [...], "datasets": [...]}`` or the ``matrix.json`` dict) into
    ``out/plots``; returns the written PNG/SVG paths. Same as ``tuner plot``."""
    import numpy as np

    from tuner.exporter import plot_matrix as _plot

    if isinstance(matrix, (str, os.PathLike)):
        path = Path(matrix)
        if labels is None and path.with_suffix(".json").is_file():
            labels = json.loads(path.with_suffix(".json").read_text())
        matrix = np.load(path, allow_pickle=False)
    return _plot(matrix, labels, out)


# --------------------------------------------------------------------------------------------
# helpers


def _base_config(config: "RunConfig | Mapping[str, Any] | None") -> RunConfig:
    if config is None:
        return RunConfig()
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return RunConfig.from_dict(config)
    raise TunerError(f"config must be a RunConfig or a dict, not {type(config).__name__}")


def _is_encoder(model: Any) -> bool:
    return model is not None and not isinstance(model, (str, os.PathLike))


def _items(specs: Any) -> list[Any]:
    if isinstance(specs, (list, tuple)):
        return list(specs)
    return [specs]


def _has_objects(specs: Any) -> bool:
    """True when ``specs`` holds data objects (DataFrames, datasets) the config cannot name."""
    return specs is not None and any(not isinstance(s, (str, os.PathLike)) for s in _items(specs))


def _data_names(specs: Any) -> Union[str, list[str]]:
    """What the config records for ``train=``/``eval=``: names and paths as given; a DataFrame as
    :data:`DATAFRAME_PLACEHOLDER`; a loaded dataset as its built-in name or file."""
    if isinstance(specs, str):
        return specs  # RunConfig splits "stsb,sickr"
    names = []
    for spec in _items(specs):
        if isinstance(spec, (str, os.PathLike)):
            names.append(os.fspath(spec))
        elif getattr(spec, "builtin", False):
            names.append(spec.name)
        elif isinstance(getattr(spec, "source", None), str) and not spec.source.startswith("<"):
            names.append(spec.source)
        else:
            names.append(DATAFRAME_PLACEHOLDER)
    return names
