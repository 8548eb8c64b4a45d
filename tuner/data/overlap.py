"""How much of a protocol's dev/test data the training rows already contain.

A row split (the ``seed`` and ``standard`` protocols) puts the same sentence into several
splits: STS sets reuse a sentence in many pairs, and MPQA repeats many short phrases. A model
fine-tuned on the training rows has then seen part of the test input. These figures say how much:

* STS, per held-out split (dev, test): the share of pairs with at least one sentence that occurs
  in a training pair (``any_in_train``), with both sentences in training pairs (``both_in_train``),
  and identical to a training pair, in either order (``pair_in_train``);
* classification: the share of rows whose sentence text occurs in the training rows
  (``sentence_in_train``).

Sentences compare as exact strings (the built-in files are already whitespace-normalised).
Every value is a plain float/int/str, so the reports go into JSON as they are.

>>> overlap_report("sickr", "seed")["test"]["any_in_train"]      # doctest: +SKIP
0.911...
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .readers import load_dataset
from .splits import protocol_splits, sentence_groups

HELD_OUT = ("dev", "test")


def _pair_keys(df: pd.DataFrame) -> pd.Series:
    """Order-free key of each STS pair (cosine similarity is symmetric)."""
    a = df["sentence1"].astype(str)
    b = df["sentence2"].astype(str)
    lo = a.where(a <= b, b)
    hi = b.where(a <= b, a)
    return lo + "\t" + hi


def split_overlap(train: pd.DataFrame, held: pd.DataFrame, task: str) -> dict[str, Any]:
    """Overlap of one held-out frame with ``train`` (see the module docstring); shares in [0, 1].

    An empty held-out frame gives ``n = 0`` and None shares.
    """
    n = len(held)
    if task == "classification":
        seen = set(train["sentence"].astype(str))
        share = float(held["sentence"].astype(str).isin(seen).mean()) if n else None
        return {"n": n, "sentence_in_train": share}
    seen = set(train["sentence1"].astype(str)) | set(train["sentence2"].astype(str))
    if not n:
        return {"n": 0, "any_in_train": None, "both_in_train": None, "pair_in_train": None}
    in1 = held["sentence1"].astype(str).isin(seen).to_numpy()
    in2 = held["sentence2"].astype(str).isin(seen).to_numpy()
    pairs = set(_pair_keys(train)) if len(train) else set()
    same = _pair_keys(held).isin(pairs).to_numpy()
    return {"n": n, "any_in_train": float(np.mean(in1 | in2)), "both_in_train": float(np.mean(in1 & in2)),
            "pair_in_train": float(np.mean(same))}


def splits_overlap(parts: dict[str, pd.DataFrame], task: str) -> dict[str, Any]:
    """Sizes of ``parts`` (``protocol_splits`` output) and the overlap of dev and test with train."""
    out: dict[str, Any] = {"sizes": {k: int(len(v)) for k, v in parts.items()}}
    for name in HELD_OUT:
        if name in parts:
            out[name] = split_overlap(parts["train"], parts[name], task)
    # how coarse the sentence grouping of the training rows is (context for the disjoint protocol)
    if len(parts["train"]):
        sizes = np.bincount(sentence_groups(parts["train"]))
        out["train_groups"] = int(len(sizes))
        out["train_largest_group_share"] = float(sizes.max() / len(parts["train"]))
    return out


def overlap_report(dataset: Any, protocol: str = "standard", seed: int = 42, *, data_dir: Any = None,
                   dev_fraction: float = 0.1, test_fraction: float = 0.3) -> dict[str, Any]:
    """JSON-safe overlap figures of one dataset under one protocol; the hook for trial records/exports.

    ``dataset`` is anything :func:`tuner.data.load_dataset` takes (a name, a path, a DataFrame) or
    an already loaded :class:`~tuner.data.Dataset`. Returns
    ``{"dataset", "task", "protocol", "seed", "sizes": {train, dev, test}, "test": {...}, "dev": {...},
    "train_groups", "train_largest_group_share"}`` with the shares described in the module docstring.
    """
    from .registry import Dataset

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir=data_dir)
    parts = protocol_splits(ds, protocol, seed=seed, dev_fraction=dev_fraction, test_fraction=test_fraction)
    return {"dataset": ds.name, "task": ds.task, "protocol": str(protocol).strip().lower(), "seed": int(seed),
            **splits_overlap(parts, ds.task)}


def headline(report: dict[str, Any], split: str = "test") -> str:
    """One short human-readable line, e.g. ``test 1479 pairs: 91.1% share a sentence with train``."""
    part = report.get(split) or {}
    if part.get("n", 0) == 0:
        return f"{split}: empty"
    if report["task"] == "classification":
        return f"{split} {part['n']} rows: {100 * part['sentence_in_train']:.1f}% have their sentence in train"
    return (f"{split} {part['n']} pairs: {100 * part['any_in_train']:.1f}% share a sentence with train, "
            f"{100 * part['both_in_train']:.1f}% both sentences, {100 * part['pair_in_train']:.1f}% identical pairs")
