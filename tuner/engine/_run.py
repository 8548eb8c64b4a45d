"""Fine-tune-and-evaluate: what one study trial (or one ``tuner finetune``) runs.

``load data -> protocol splits -> load encoder -> finetune -> score dev and test -> save``.
Task ``nli`` (protocol ``nli-transfer``): train on NLI rows (both views, :class:`tuner.engine._train.NliTrainData`),
score dev on STS-B dev only (the selection set) and test on the full official test data of the
STS sets (default: all seven).
Objectives and the CLI call :func:`run_finetune` and :func:`evaluate_model`; no training code
lives anywhere else.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from tuner.config import RunConfig, check_prompt
from tuner.data import Dataset, protocol_splits
from tuner.engine._prepare import (SPLIT_SEED, DataSpec, PreparedData, as_dataset, as_list, not_scored,  # noqa: F401
                                   prepare_data)
from tuner.engine._mining import mine_for_run
from tuner.engine._train import TrainResult, finetune
from tuner.errors import TunerError
from tuner.evaluation import (RETRIEVAL_METRICS, evaluate_classification, evaluate_classification_splits,
                              evaluate_retrieval, evaluate_sts)
from tuner.models._encoder import Encoder, load_encoder, save_encoder
from tuner.models._pooling import parse_pooling

#: nli: the NLI-transfer protocol's score, STS Spearman (NLI data itself is never scored)
METRIC = {"sts": "spearman", "classification": "accuracy", "nli": "spearman", "retrieval": "ndcg@10"}


def score_split(encoder: Encoder, dataset: Dataset, frame: pd.DataFrame, *, train_frame: Optional[pd.DataFrame] = None,
                classification_protocol: str = "seed", batch_size: int = 64, max_seq_length: int = 128,
                seed: int = 42) -> dict[str, float]:
    """Score one split: STS -> spearman/pearson; classification -> accuracy under the named protocol;
    retrieval (``frame``: the split's qrels) -> NDCG@10, MRR@10, Recall@10/100, MAP@100."""
    if dataset.task == "nli":
        raise not_scored(dataset)
    if dataset.task == "sts":
        return evaluate_sts(encoder, frame, batch_size, max_seq_length)
    if dataset.task == "retrieval":
        return evaluate_retrieval(encoder, dataset.corpus, dataset.queries, frame, batch_size=batch_size,
                                  max_seq_length=max_seq_length)
    return evaluate_classification(encoder, frame, train=train_frame, protocol=classification_protocol,
                                   batch_size=batch_size, max_seq_length=max_seq_length, seed=seed)


def evaluate_model(model: "str | Encoder", datasets: "DataSpec | Sequence[DataSpec]", *, pooling=None,
                   split: str = "test", protocol: Optional[str] = None, classification_protocol: Optional[str] = None,
                   data_dir=None, batch_size: int = 64, max_seq_length: int = 128, seed: int = 42,
                   device=None, prompt: Optional[str] = None) -> pd.DataFrame:
    """Score ``model`` on ``datasets``; one row per dataset.

    With ``protocol=None`` the full official split is scored (``split``: test for STS-B/SICK-R,
    the whole file for sets that only have a test file) and classification uses SentEval's
    10-fold CV over the whole set. With ``protocol`` ('seed' or 'standard') that protocol's
    ``split`` (train/dev/test) is scored and classification fits on its train split.
    ``prompt``: a template with ``{text}`` every sentence is put in (decoders, PromptEOL style);
    None keeps the prompt a saved model was trained with, ``""`` scores the bare text.
    """
    if prompt:
        check_prompt(prompt)  # a template without {text} is one line before the model loads
    encoder = model if isinstance(model, Encoder) else load_encoder(model, pooling=pooling, device=device,
                                                                    prompt=prompt)
    if pooling is not None and isinstance(model, Encoder):
        encoder.pooling = parse_pooling(pooling)
    if prompt is not None and isinstance(model, Encoder):
        encoder.prompt = prompt or None
    rows = []
    for spec in as_list(datasets):
        ds = as_dataset(spec, data_dir=data_dir)
        if ds.task == "nli":
            raise not_scored(ds)
        start = time.perf_counter()
        if ds.task == "retrieval" and protocol is not None:
            raise TunerError(f"dataset '{ds.name}' is a retrieval set with its own qrels/{split}.tsv; drop --protocol "
                             "(protocols split STS and classification rows)")
        if protocol is None:
            if split not in ds.splits and not (split == "test" and "all" in ds.splits):
                raise TunerError(f"dataset '{ds.name}' has no '{split}' split (it has {', '.join(ds.splits)}); "
                                 "use --split with one of those or name a --protocol")
            frame = ds.splits.get(split, ds.splits.get("all"))
            cls_protocol = classification_protocol or "senteval"
            train_frame = ds.splits.get("train")
            used_split = split if split in ds.splits else "all"
        else:
            parts = protocol_splits(ds, protocol, seed=seed)
            if split not in parts:
                raise TunerError(f"split '{split}' is unknown; use train, dev or test")
            frame, train_frame, used_split = parts[split], parts["train"], split
            cls_protocol = classification_protocol or "seed"
        result = score_split(encoder, ds, frame, train_frame=train_frame, classification_protocol=cls_protocol,
                             batch_size=batch_size, max_seq_length=max_seq_length, seed=seed)
        metric = METRIC[ds.task]
        rows.append({
            "model": encoder.name, "dataset": ds.name, "task": ds.task, "split": used_split, "metric": metric,
            "score": result[metric], "pearson": result.get("pearson", np.nan), "n": result["n"],
            "protocol": protocol or "official", "classification_protocol": cls_protocol if ds.task == "classification" else None,
            "pooling": str(encoder.pooling), "seconds": round(time.perf_counter() - start, 3),
            **({m: result[m] for m in RETRIEVAL_METRICS} if ds.task == "retrieval" else {}),
        })
    return pd.DataFrame(rows)


@dataclass
class FinetuneOutcome:
    """What a fine-tune run produced: scores per split and dataset, the training record, the saved path.

    ``config`` is the run as it ran: the input config with the model's pooling filled in."""

    scores: dict[str, dict[str, float]]  # {"dev": {dataset: score}, "test": {...}}
    metric: str
    train: TrainResult
    config: RunConfig
    model: str
    output: Optional[Path] = None
    details: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    mining: Optional[dict[str, Any]] = None  # mined negatives: the summary, the cache key, whether it was a hit

    @property
    def dev_score(self) -> float:
        values = list(self.scores.get("dev", {}).values())
        return float(np.mean(values)) if values else float("nan")

    @property
    def test_score(self) -> float:
        values = list(self.scores.get("test", {}).values())
        return float(np.mean(values)) if values else float("nan")


def score_eval_sets(encoder: Encoder, data: PreparedData, splits: Sequence[str] = ("dev", "test"), *,
                    batch_size: int = 64, max_seq_length: int = 128,
                    seed: int = 42) -> tuple[dict[str, dict[str, float]], dict]:
    """Score every eval set on ``splits``; returns ({split: {dataset: score}}, details).

    ``details[split][dataset]`` is the evaluator's result plus the per-item outputs, in the rows'
    order (fixed by :data:`SPLIT_SEED`, so the same for every run of a study): STS ``"similarities"``
    and ``"gold"``, classification ``"correct"`` (0/1 per row). A set without one of ``splits``
    (nli-transfer: only STS-B has dev) is not scored on it."""
    scores: dict[str, dict[str, float]] = {s: {} for s in splits}
    details: dict[str, dict[str, dict[str, float]]] = {s: {} for s in splits}
    for ds, parts in data.eval:
        frames = {split: parts[split] for split in splits if split in parts}  # sampled by prepare_data when asked
        if not frames:
            continue
        if ds.task == "retrieval":  # its own qrels per split, sampled by query when asked (retrieval_parts)
            results = {split: score_split(encoder, ds, parts[split], batch_size=batch_size,
                                          max_seq_length=max_seq_length) for split in frames}
        elif ds.task == "classification":
            # Encode the (large) train split once for all scored splits.
            results = evaluate_classification_splits(encoder, frames, parts["train"], batch_size=batch_size,
                                                     max_seq_length=max_seq_length, seed=seed, return_items=True)
        else:
            results = {split: {**evaluate_sts(encoder, frame, batch_size, max_seq_length, return_items=True),
                               "gold": frame["score"].to_numpy(dtype=np.float64)}
                       for split, frame in frames.items()}
        for split, result in results.items():
            scores[split][ds.name] = result[METRIC[ds.task]]
            details[split][ds.name] = result
    return scores, details


def saved_record(config: RunConfig, data: PreparedData, scores: dict[str, dict[str, float]], details: dict,
                 result: TrainResult, output: str | None) -> dict[str, Any]:
    """What ``tuner.json`` and the model card record beside a saved model (:func:`tuner.models.save_encoder`).

    ``losses``: the losses that trained, with their weight and temperature (none for a loss that
    takes none); ``eval_rows``: the rows each score is over; ``command``: the ``finetune`` command
    that re-runs the config, saving to ``output`` (None when the run had a loaded model or
    in-memory data that no command line names)."""
    losses = {name: {"weight": weight, **({"tau": config.taus[name]} if name in config.taus else {})}
              for name, weight in config.active_weights.items()}
    rows = {split: {name: int(result_["n"]) for name, result_ in per.items() if "n" in result_}
            for split, per in details.items()}
    return {"config": config.to_dict(), "task": data.task, "eval": [ds.name for ds, _ in data.eval],
            "scores": scores, "metric": METRIC[data.task], "losses": losses, "train_pairs": len(data.train),
            "eval_rows": rows, "steps": result.steps,
            **({"command": config.command(output)} if output is not None else {})}


def run_finetune(config: RunConfig, *, model: Optional[Encoder] = None,
                 train: "DataSpec | Sequence[DataSpec] | None" = None,
                 eval: "DataSpec | Sequence[DataSpec] | None" = None, output: "str | os.PathLike | None" = None,
                 device=None, on_eval: Optional[Callable[[int, float], None]] = None,
                 eval_splits: Sequence[str] = ("dev", "test"), progress: bool = True,
                 prepared: Optional[PreparedData] = None,
                 on_step: Optional[Callable[[int, int], None]] = None) -> FinetuneOutcome:
    """Fine-tune the run ``config`` describes and score every eval set on dev and test.

    ``model`` (an already loaded encoder), ``train``/``eval`` (files, DataFrames) and ``prepared``
    (data a worker keeps between trials) override what ``config`` names. ``on_eval(step,
    dev_score)`` is called every ``config.eval_every`` steps with the mean dev score over the eval
    sets (a study reports it for pruning; it may raise ``optuna.TrialPruned``).
    """
    data = prepared or prepare_data(config, train, eval)
    encoder = model if model is not None else load_encoder(config.model, pooling=config.pooling, device=device)
    if config.pooling is not None:
        encoder.pooling = parse_pooling(config.pooling)
    config = config.replace(pooling=encoder.pooling, task=data.task if data.task != "retrieval" else config.task)
    mining = None
    if config.mining is not None:  # the base model mines its own hard negatives (cached per setting)
        if config.prompt is not None:
            encoder.prompt = config.prompt
        data, mined = mine_for_run(data, encoder, config)
        mining = {**mined.stats, "key": mined.key, "from_cache": mined.from_cache}

    hook = None
    if on_eval is not None:
        def hook(step: int) -> None:
            dev, _ = score_eval_sets(encoder, data, ("dev",), max_seq_length=config.max_seq_length, seed=config.seed)
            on_eval(step, float(np.mean(list(dev["dev"].values()))))

    result = finetune(encoder, data.train, config, on_eval=hook, progress=progress, on_step=on_step)
    scores, details = score_eval_sets(encoder, data, eval_splits, max_seq_length=config.max_seq_length, seed=config.seed)
    saved = None
    if output is not None:
        reproducible = model is None and train is None and eval is None and prepared is None
        saved = save_encoder(encoder, output, saved_record(config, data, scores, details, result,
                                                           os.fspath(output) if reproducible else None))
    return FinetuneOutcome(scores=scores, metric=METRIC[data.task], train=result, config=config,
                           model=encoder.name, output=saved, details=details, mining=mining)
