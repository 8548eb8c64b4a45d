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
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

from tuner.config import RunConfig, check_prompt
from tuner.data import Dataset, check_min_rows, load_dataset, protocol_splits, subsample
from tuner.data.beir import sample_queries
from tuner.engine._train import NliTrainData, PairData, TrainResult, finetune, nli_train_data, pairs_from_frame
from tuner.errors import TunerError
from tuner.evaluation import (RETRIEVAL_METRICS, evaluate_classification, evaluate_classification_splits,
                              evaluate_retrieval, evaluate_sts)
from tuner.models._encoder import Encoder, load_encoder, save_encoder
from tuner.models._pooling import parse_pooling

DataSpec = Union[str, "os.PathLike[str]", pd.DataFrame, Dataset]
#: nli: the NLI-transfer protocol's score, STS Spearman (NLI data itself is never scored)
METRIC = {"sts": "spearman", "classification": "accuracy", "nli": "spearman", "retrieval": "ndcg@10"}


def not_scored(ds: Dataset) -> TunerError:
    """The one-line error for scoring NLI data (it only trains)."""
    return TunerError(f"dataset '{ds.name}' is NLI data (premise, hypothesis, label): it trains (--train {ds.name} "
                      "--protocol nli-transfer) but is not scored; evaluate on STS sets such as stsb, sts12, sickr")


def as_dataset(spec: DataSpec, task: Optional[str] = None, data_dir: "str | os.PathLike | None" = None) -> Dataset:
    if isinstance(spec, Dataset):
        return spec
    return load_dataset(spec, task=task, data_dir=data_dir)


def as_list(specs: "DataSpec | Sequence[DataSpec] | None") -> list[DataSpec]:
    if specs is None:
        return []
    if isinstance(specs, (str, os.PathLike, pd.DataFrame, Dataset)):
        if isinstance(specs, str) and "," in specs:
            return [s.strip() for s in specs.split(",") if s.strip()]
        return [specs]
    return list(specs)


def _task_of(datasets: Iterable[Dataset], task: Optional[str]) -> str:
    tasks = {d.task for d in datasets}
    if task is not None:
        wrong = [d.name for d in datasets if d.task != task]
        if wrong:
            raise TunerError(f"dataset(s) {', '.join(wrong)} are not {task} data; use {task} datasets or change the task")
        return task
    if len(tasks) != 1:
        raise TunerError("cannot mix STS and classification datasets in one run; run them separately")
    return tasks.pop()


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

    @property
    def dev_score(self) -> float:
        values = list(self.scores.get("dev", {}).values())
        return float(np.mean(values)) if values else float("nan")

    @property
    def test_score(self) -> float:
        values = list(self.scores.get("test", {}).values())
        return float(np.mean(values)) if values else float("nan")


@dataclass
class PreparedData:
    task: str
    train: "PairData | NliTrainData"
    eval: list[tuple[Dataset, dict[str, pd.DataFrame]]]  # (dataset, protocol splits; nli: only those scored)


SPLIT_SEED = 42  # the seed's train_test_split(random_state=42); fixed so every run sees the same rows


def prepare_data(config: RunConfig, train: "DataSpec | Sequence[DataSpec] | None" = None,
                 eval: "DataSpec | Sequence[DataSpec] | None" = None) -> PreparedData:
    """Load and split the data of one run: training pairs from the train sets' train splits and the
    protocol splits of every eval set (default: the train sets).

    ``train``/``eval`` override ``config.train``/``config.eval`` with files, DataFrames or loaded
    datasets (the API's way in). Splits use :data:`SPLIT_SEED` whatever ``config.seed`` is, and so
    do the ``max_eval_examples`` samples of dev and test: runs with different seeds are scored on
    the same rows. ``config.seed`` drives the ``max_train_examples`` subsample."""
    task = config.task
    train_sets = [as_dataset(s, task, config.data_dir) for s in as_list(train if train is not None else config.train)]
    if not train_sets:
        raise TunerError("no training dataset given; pass --train with a dataset name or file")
    eval_specs = eval if eval is not None else (config.eval or None)
    if task == "nli" or any(ds.task == "nli" for ds in train_sets):
        return _prepare_nli(config, train_sets, eval_specs)
    eval_sets = [_eval_dataset(s, task, config.data_dir) for s in as_list(eval_specs)] or train_sets
    task = _task_of(train_sets + [d for d in eval_sets if d.task != "retrieval"], task)
    frames, ranges = [], set()
    for ds in train_sets:
        frames.append(protocol_splits(ds, config.protocol, seed=SPLIT_SEED)["train"])
        ranges.add(ds.score_range)
    if len(ranges) > 1:
        # Normalise each set with its own range before concatenating.
        pairs = [pairs_from_frame(f, task, ds.score_range) for f, ds in zip(frames, train_sets)]
        merged = PairData(sum((p.text1 for p in pairs), []), sum((p.text2 for p in pairs), []),
                          np.concatenate([p.labels for p in pairs]))
        n = config.max_train_examples
        if n is not None and len(merged) > n:
            keep = np.sort(np.random.default_rng(config.seed).choice(len(merged), n, replace=False))
            merged = PairData([merged.text1[i] for i in keep], [merged.text2[i] for i in keep], merged.labels[keep])
        train_pairs = merged
    else:
        frame = pd.concat(frames, ignore_index=True)
        frame = subsample(frame, config.max_train_examples, config.seed)
        check_min_rows(frame, config.batch_size, f"train split of {'+'.join(d.name for d in train_sets)}")
        train_pairs = pairs_from_frame(frame, task, train_sets[0].score_range)
    evals = []
    for ds in eval_sets:
        if ds.task == "retrieval":
            evals.append((ds, retrieval_parts(ds, config.max_eval_examples)))
            continue
        parts = protocol_splits(ds, config.protocol, seed=SPLIT_SEED)
        if config.max_eval_examples:
            # train too: classification fits its logistic regression on the train split's embeddings
            parts = {k: subsample(v, config.max_eval_examples, SPLIT_SEED) for k, v in parts.items()}
        evals.append((ds, parts))
    return PreparedData(task=task, train=train_pairs, eval=evals)


def _eval_dataset(spec: DataSpec, task: Optional[str], data_dir: Any) -> Dataset:
    """An eval set: of the run's task, or a retrieval folder (scored with any task's model)."""
    ds = as_dataset(spec, None, data_dir)
    if ds.task != "retrieval" and task is not None and ds.task != task:
        raise TunerError(f"dataset {ds.name} is {ds.task} data, not {task}; use {task} datasets or a retrieval folder")
    return ds


def retrieval_parts(ds: Dataset, max_queries: Optional[int]) -> dict[str, pd.DataFrame]:
    """A retrieval set's dev/test qrels: its own files, never a protocol split; ``max_queries`` whole queries."""
    return {k: sample_queries(v, max_queries, SPLIT_SEED) for k, v in ds.splits.items() if k in ("dev", "test")}


def _prepare_nli(config: RunConfig, train_sets: list[Dataset], eval_specs: Any) -> PreparedData:
    """nli-transfer: NLI rows (whole premises up to ``max_train_examples``) as pairs and triplets; every
    eval set's full official test data, and STS-B dev (loaded when no eval set is STS-B) for selection."""
    from tuner.data.nli import subsample_premises
    from tuner.data.splits import NLI_SELECTION, NLI_TRANSFER, NLI_TRANSFER_EVAL

    names = "+".join(d.name for d in train_sets)
    wrong = [d.name for d in train_sets if d.task != "nli"]
    if wrong:
        raise TunerError(f"cannot mix NLI and other training data ({', '.join(wrong)} not NLI); train on NLI sets "
                         "only (snli, allnli or premise/hypothesis/label files)")
    if config.protocol != NLI_TRANSFER:
        raise TunerError(f"{names} is NLI data: training on it needs --protocol {NLI_TRANSFER} (select on STS-B dev, "
                         "report the STS test sets)")
    frame = pd.concat([protocol_splits(d, NLI_TRANSFER)["train"] for d in train_sets], ignore_index=True)
    frame = subsample_premises(frame, config.max_train_examples, config.seed)
    check_min_rows(frame, config.batch_size, f"NLI rows of {names}")
    train = nli_train_data(frame, config.nli_neutral, f"NLI rows of {names}")
    evals = []
    for ds in (as_dataset(s, None, config.data_dir) for s in as_list(eval_specs) or list(NLI_TRANSFER_EVAL)):
        if ds.task == "nli":
            raise not_scored(ds)
        if ds.task == "retrieval":  # reported on its test qrels; selection stays on STS-B dev
            evals.append((ds, {k: v for k, v in retrieval_parts(ds, config.max_eval_examples).items() if k == "test"}))
            continue
        parts = protocol_splits(ds, NLI_TRANSFER)  # raises for classification sets
        keep = ("dev", "test") if ds.name == NLI_SELECTION else ("test",)
        evals.append((ds, {k: subsample(parts[k], config.max_eval_examples, SPLIT_SEED) for k in keep}))
    if not any(ds.name == NLI_SELECTION for ds, _ in evals):
        stsb = as_dataset(NLI_SELECTION, None, config.data_dir)
        evals.append((stsb, {"dev": subsample(protocol_splits(stsb, NLI_TRANSFER)["dev"], config.max_eval_examples,
                                              SPLIT_SEED)}))
    return PreparedData(task="nli", train=train, eval=evals)


def score_eval_sets(encoder: Encoder, data: PreparedData, splits: Sequence[str] = ("dev", "test"), *,
                    batch_size: int = 64, max_seq_length: int = 128, seed: int = 42,
                    max_eval_examples: Optional[int] = None) -> tuple[dict[str, dict[str, float]], dict]:
    """Score every eval set on ``splits``; returns ({split: {dataset: score}}, details).

    ``details[split][dataset]`` is the evaluator's result plus the per-item outputs, in the rows'
    order (fixed by :data:`SPLIT_SEED`, so the same for every run of a study): STS ``"similarities"``
    and ``"gold"``, classification ``"correct"`` (0/1 per row). A set without one of ``splits``
    (nli-transfer: only STS-B has dev) is not scored on it."""
    scores: dict[str, dict[str, float]] = {s: {} for s in splits}
    details: dict[str, dict[str, dict[str, float]]] = {s: {} for s in splits}
    for ds, parts in data.eval:
        frames = {split: subsample(parts[split], max_eval_examples, seed) if max_eval_examples else parts[split]
                  for split in splits if split in parts}
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
    config = config.replace(pooling=encoder.pooling, task=data.task)

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
                           model=encoder.name, output=saved, details=details)
