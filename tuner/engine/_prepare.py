"""What a run trains on and is scored on: the training data in its shape (scored pairs, NLI rows,
unscored pairs or triplets) and every eval set's dev/test rows (protocol splits, or a retrieval
folder's own qrels). :func:`prepare_data` reads everything and checks what can be checked before a
model loads; :mod:`tuner.engine._run` trains and scores on the result.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

from tuner.config import RunConfig
from tuner.data import Dataset, check_min_rows, load_dataset, protocol_splits, subsample
from tuner.data.beir import sample_queries
from tuner.data.sampling import eval_sample
from tuner.data.shapes import PAIRS, SHAPED_TASKS, TRIPLETS, negative_columns
from tuner.engine._train_data import NliTrainData, PairData, TripletData, nli_train_data, pairs_from_frame
from tuner.errors import TunerError
from tuner.losses.registry import SHAPES, check_shape

DataSpec = Union[str, "os.PathLike[str]", pd.DataFrame, Dataset]
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


@dataclass
class PreparedData:
    task: str
    train: "PairData | NliTrainData"
    eval: list[tuple[Dataset, dict[str, pd.DataFrame]]]  # (dataset, protocol splits; nli: only those scored)
    #: unscored pairs: every (anchor, positive) row before the subsample, what hard-negative mining reads
    #: (:func:`tuner.engine._mining.mine_for_run`; the run's ``mine_*`` settings)
    mine_from: Optional[pd.DataFrame] = None
    where: str = ""


SPLIT_SEED = 42  # the seed's train_test_split(random_state=42); fixed so every run sees the same rows


def prepare_data(config: RunConfig, train: "DataSpec | Sequence[DataSpec] | None" = None,
                 eval: "DataSpec | Sequence[DataSpec] | None" = None) -> PreparedData:
    """Load and split the data of one run: training pairs from the train sets' train splits and the
    protocol splits of every eval set (default: the train sets).

    ``train``/``eval`` override ``config.train``/``config.eval`` with files, DataFrames or loaded
    datasets (the API's way in). Splits use :data:`SPLIT_SEED` whatever ``config.seed`` is, and so
    do the ``max_eval_examples`` samples of dev and test (stratified, :func:`sampled`): runs with
    different seeds are scored on the same rows. ``config.seed`` drives the ``max_train_examples`` subsample."""
    task = config.task
    train_sets = [_train_dataset(s, task, config) for s in as_list(train if train is not None else config.train)]
    if not train_sets:
        raise TunerError("no training dataset given; pass --train with a dataset name or file")
    eval_specs = eval if eval is not None else (config.eval or None)
    if config.mining is not None and not any(ds.task in SHAPED_TASKS for ds in train_sets):
        raise _cannot_mine(config, "+".join(d.name for d in train_sets), f"{train_sets[0].task} data")
    if task == "nli" or any(ds.task == "nli" for ds in train_sets):
        return _prepare_nli(config, train_sets, eval_specs)
    if any(ds.task in SHAPED_TASKS for ds in train_sets):
        return _prepare_shaped(config, train_sets, eval_specs)
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
    return PreparedData(task=task, train=train_pairs, eval=_eval_parts(eval_sets, config))


def _eval_parts(eval_sets: list[Dataset], config: RunConfig) -> list[tuple[Dataset, dict[str, pd.DataFrame]]]:
    """Each eval set's protocol splits (a retrieval folder: its own qrels), sampled when asked."""
    evals = []
    for ds in eval_sets:
        if ds.task == "retrieval":
            evals.append((ds, retrieval_parts(ds, config.max_eval_examples)))
            continue
        # train too: classification fits its logistic regression on the train split's embeddings
        evals.append((ds, sampled(ds, protocol_splits(ds, config.protocol, seed=SPLIT_SEED), config.max_eval_examples)))
    return evals


def sampled(ds: Dataset, parts: dict[str, pd.DataFrame], n: Optional[int],
            keep: Sequence[str] = ("train", "dev", "test")) -> dict[str, pd.DataFrame]:
    """The ``keep`` splits of ``parts``, each an ``n``-row stratified sample when ``n`` is set
    (:func:`tuner.data.sampling.eval_sample`: one independent stream per dataset and split)."""
    return {k: eval_sample(parts[k], n, dataset=ds.name, split=k, seed=SPLIT_SEED) for k in keep if k in parts}


def _train_dataset(spec: DataSpec, task: Optional[str], config: RunConfig) -> Dataset:
    """A training set: read with the run's ``columns`` mapping; pairs/triplets whatever the (eval) task."""
    if isinstance(spec, Dataset):
        return spec
    columns = config.columns or None
    try:
        return load_dataset(spec, task=task, data_dir=config.data_dir, columns=columns)
    except TunerError:
        if task is None:
            raise
        try:  # an (anchor, positive[, negative]) file trains a model of any task
            shaped = load_dataset(spec, data_dir=config.data_dir, columns=columns)
        except TunerError:
            shaped = None
        if shaped is None or shaped.task not in SHAPED_TASKS:
            raise
        return shaped


def _prepare_shaped(config: RunConfig, train_sets: list[Dataset], eval_specs: Any) -> PreparedData:
    """Unscored pairs or triplets (:mod:`tuner.data.shapes`): training data only, scored on ``eval`` sets of
    another task (their protocol splits, or a retrieval folder's qrels). Checks that every loss that is on
    can train on the shape before any model loads."""
    names = "+".join(d.name for d in train_sets)
    shapes = {d.task for d in train_sets}
    if len(shapes) != 1:
        raise TunerError(f"{names}: cannot mix {' and '.join(sorted(shapes))} in one run; train on one shape")
    shape = shapes.pop()
    if not as_list(eval_specs):
        raise TunerError(f"{names} holds {SHAPES[shape]}, which trains but cannot be scored; pass --eval with the "
                         "sets to score (e.g. stsb, or a retrieval folder)")
    if config.mining is not None and shape != PAIRS:
        raise _cannot_mine(config, names, "triplets: it has its negatives")
    check_shape(config.losses, TRIPLETS if config.mining is not None else shape, names)
    whole = pd.concat([d.splits.get("train", d.splits.get("all")) for d in train_sets], ignore_index=True)
    frame = subsample(whole, config.max_train_examples, config.seed)
    check_min_rows(frame, config.batch_size, f"{shape} of {names}")
    eval_sets = [_eval_dataset(s, config.task, config.data_dir) for s in as_list(eval_specs)]
    scored = [d for d in eval_sets if d.task != "retrieval"]
    task = _task_of(scored, config.task) if scored else "retrieval"
    return PreparedData(task=task, train=shaped_train_data(frame, shape, f"{shape} of {names}"),
                        eval=_eval_parts(eval_sets, config), mine_from=whole if shape == PAIRS else None,
                        where=f"{shape} of {names}")


def _cannot_mine(config: RunConfig, names: str, what: str) -> TunerError:
    return TunerError(f"mine_num_negatives is {config.mine_num_negatives}, but {names} is {what}; mining reads "
                      "unscored (anchor, positive) pairs: set it to 0 or train on a pairs file")


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
        evals.append((ds, sampled(ds, parts, config.max_eval_examples, keep)))
    if not any(ds.name == NLI_SELECTION for ds, _ in evals):
        stsb = as_dataset(NLI_SELECTION, None, config.data_dir)
        evals.append((stsb, sampled(stsb, protocol_splits(stsb, NLI_TRANSFER), config.max_eval_examples, ("dev",))))
    return PreparedData(task="nli", train=train, eval=evals)


def shaped_train_data(df: pd.DataFrame, shape: str, where: str) -> NliTrainData:
    """Unscored pairs or triplets (:mod:`tuner.data.shapes`) as the two views NLI rows give.

    Triplets: the (anchor, positive) = 1 and (anchor, negative) = 0 scored pairs for the pair losses
    (as NLI's entailment / contradiction; every negative column gives its rows' 0 pairs), and the rows
    themselves for a loss's triplet form, every negative column joining the candidates. Pairs: only the
    triplet view, without negatives (the rest of the batch is the negatives); the pair losses cannot
    learn from them (:func:`tuner.losses.registry.check_shape` refuses them first)."""
    negatives = negative_columns(list(df.columns))
    anchor, positive = df["anchor"].astype(str).tolist(), df["positive"].astype(str).tolist()
    missing = {"pairs": f"{where} are unscored (anchor, positive) pairs: only a loss that ranks a positive above "
                        "the rest of the batch (ibn) can train on them"}
    if not negatives:
        return NliTrainData(None, TripletData(anchor, positive, [None] * len(anchor)), missing)
    columns = [[v if isinstance(v, str) else None for v in df[c]] for c in negatives]
    negative_pairs = [(a, n) for column in columns for a, n in zip(anchor, column) if n is not None]
    pairs = PairData(anchor + [a for a, _ in negative_pairs], positive + [n for _, n in negative_pairs],
                     np.r_[np.ones(len(anchor)), np.zeros(len(negative_pairs))])
    return NliTrainData(pairs, TripletData(anchor, positive, columns[0], columns[1:]))
