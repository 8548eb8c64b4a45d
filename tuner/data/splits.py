"""Evaluation protocols: deterministic, seeded train/dev/test splits.

``protocol_splits(ds, protocol, seed)`` always returns ``{"train", "dev", "test"}`` frames that
are disjoint (by row of the source table), cover the source table and have a fresh index.

* ``"seed"`` -- the original project's protocol. The dataset's official table
  (``Dataset.official()``: the test file for STS, stsb and sickr included; ``all.tsv`` for
  MR/CR/MPQA/SUBJ) is split 70/30 exactly like
  ``sklearn.model_selection.train_test_split(df, test_size=0.3, random_state=42)``
  (no stratification, as the original did). Dev is then carved out of the 70% part
  (``dev_fraction`` of it, same function and seed), so model selection never sees test rows.
* ``"standard"`` -- datasets with official train/dev/test splits (stsb, sickr) use them
  unchanged. Every other built-in gets the same 30% test rows as ``"seed"`` (so results are
  comparable) and dev carved from the rest the same way: for sets without official splits the
  two protocols coincide.
* ``"disjoint"`` -- sentence-disjoint: the same table as ``"seed"`` (the official test file,
  ``all.tsv`` for MR/CR/MPQA/SUBJ) split about 70/30 by *group* instead of by row, dev carved
  from the 70% part the same way. For STS a group is a connected component of the
  sentence-sharing graph (sentences are nodes, pairs are edges), so no test or dev sentence
  occurs in any training pair, nor any test sentence in a dev pair; for classification a group
  is all rows with the same sentence text, so exact duplicates never straddle two splits.
  Groups are taken whole, in a seeded random order, while they fit the target size, so the
  proportions are close to but not exactly 70/30 (``docs/results/overlap.md`` lists them).
  No pair is dropped: on the built-ins the largest component holds at most 11% of a table
  (STS16), well under the 30% test share, so no giant component needs cutting. A group larger
  than a split's target simply stays in train.
* Custom data behaves like the test-only built-ins (its single ``all`` table is split), unless
  it had a ``split`` column: then its declared train/dev/test rows are used under every protocol
  (dev carved from train when it declares none); under ``"disjoint"`` the training rows that share
  a sentence with a dev or test row are removed from train.
* ``"nli-transfer"`` -- train on NLI data, score on STS (:data:`NLI_TRANSFER`, not in
  :data:`PROTOCOLS`, which are the row-splitting protocols). An NLI set trains on its ``train``
  split, or on all its rows when it has none (the local ``snli``: the official dev and test
  splits); its dev/test are empty. An STS set trains nothing (empty train); its test is the full
  official test data (``Dataset.official()``) and its dev the official dev split (empty when it has
  none); the engine selects on STS-B dev only (:data:`NLI_SELECTION`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tuner.errors import TunerError

from .registry import Dataset

PROTOCOLS = ("seed", "standard", "disjoint")
#: Train on NLI, select on STS-B dev, report the full official test data of the seven STS sets.
NLI_TRANSFER = "nli-transfer"
ALL_PROTOCOLS = PROTOCOLS + (NLI_TRANSFER,)
NLI_TRANSFER_EVAL = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
NLI_SELECTION = "stsb"


def _check_fraction(value: float, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TunerError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= f < 1.0:
        raise TunerError(f"{what} must be in [0, 1), got {f:g}; e.g. 0.1")
    return f


def _split(df: pd.DataFrame, fraction: float, seed: int, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held_out) like ``train_test_split(df, test_size=fraction, random_state=seed)``."""
    if fraction == 0.0:
        return df.reset_index(drop=True), df.iloc[0:0].reset_index(drop=True)
    from sklearn.model_selection import train_test_split  # lazy: sklearn import is slowish

    try:
        rest, held = train_test_split(df, test_size=fraction, random_state=seed)
    except ValueError:
        raise TunerError(
            f"{what} has {len(df)} row{'s' if len(df) != 1 else ''}, too few to split off "
            f"{fraction:g} of it; add data or use a dataset with more rows"
        ) from None
    return rest.reset_index(drop=True), held.reset_index(drop=True)


def sentence_groups(df: pd.DataFrame) -> np.ndarray:
    """Group id per row: rows in one group share sentences (directly or through other rows).

    STS frames (sentence1, sentence2): connected components of the graph whose nodes are the
    distinct sentences and whose edges are the pairs. Classification frames (sentence): one group
    per distinct sentence text. Sentences compare as exact strings.
    """
    if "sentence" in df.columns:
        codes, _ = pd.factorize(df["sentence"].astype(str))
        return np.asarray(codes, dtype=np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(df)
    codes, uniques = pd.factorize(pd.concat([df["sentence1"].astype(str), df["sentence2"].astype(str)],
                                            ignore_index=True))
    a, b = codes[:n], codes[n:]
    graph = coo_matrix((np.ones(n, dtype=np.int8), (a, b)), shape=(len(uniques), len(uniques)))
    _, labels = connected_components(graph, directed=False)
    # renumber in order of first appearance so ids do not depend on scipy's numbering
    first, _ = pd.factorize(labels[a])
    return np.asarray(first, dtype=np.int64)


def _grouped_split(df: pd.DataFrame, fraction: float, seed: int, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held_out): whole sentence groups go to ``held_out`` until it has ~``fraction`` of the rows.

    Groups are visited in a seeded random order; one is taken when it still fits the target
    (``round(fraction * len(df))`` rows), so held_out never exceeds the target and falls short
    of it only by less than the smallest group left. Rows of each part are shuffled (seeded).
    """
    if fraction == 0.0:
        return df.reset_index(drop=True), df.iloc[0:0].reset_index(drop=True)
    target = int(round(fraction * len(df)))
    groups = sentence_groups(df)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    if target < 1 or len(sizes) < 2:
        raise TunerError(
            f"{what} has {len(df)} row{'s' if len(df) != 1 else ''} in {len(sizes)} sentence group"
            f"{'s' if len(sizes) != 1 else ''}, too few to split off {fraction:g} of it by sentence; "
            f"add data or use the 'seed' protocol"
        )
    rng = np.random.default_rng(seed)
    held = np.zeros(len(sizes), dtype=bool)
    count = 0
    for g in rng.permutation(len(sizes)):
        if count + sizes[g] <= target:
            held[g] = True
            count += int(sizes[g])
            if count == target:
                break
    if count == 0:
        raise TunerError(f"{what}: every sentence group is larger than {fraction:g} of the rows; "
                         f"use the 'seed' protocol for this data")
    in_held = held[groups]
    rest_idx = rng.permutation(np.flatnonzero(~in_held))
    held_idx = rng.permutation(np.flatnonzero(in_held))
    return df.iloc[rest_idx].reset_index(drop=True), df.iloc[held_idx].reset_index(drop=True)


def _sentences(df: pd.DataFrame) -> set[str]:
    cols = ["sentence"] if "sentence" in df.columns else ["sentence1", "sentence2"]
    return set().union(*(set(df[c].astype(str)) for c in cols))


def _drop_shared(train: pd.DataFrame, held: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of ``train`` that share no sentence with any frame of ``held``."""
    seen = set().union(*(_sentences(h) for h in held)) if held else set()
    cols = ["sentence"] if "sentence" in train.columns else ["sentence1", "sentence2"]
    keep = np.ones(len(train), dtype=bool)
    for c in cols:
        keep &= ~train[c].astype(str).isin(seen).to_numpy()
    return train[keep].reset_index(drop=True)


def protocol_splits(
    ds: Dataset,
    protocol: str = "standard",
    seed: int = 42,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.3,
) -> dict[str, pd.DataFrame]:
    """Train/dev/test frames of ``ds`` under ``protocol`` (see module docstring)."""
    proto = str(protocol).strip().lower()
    if proto == NLI_TRANSFER:
        return _nli_transfer_splits(ds)
    if proto not in PROTOCOLS:
        raise TunerError(f"unknown protocol '{protocol}'; use one of: {', '.join(ALL_PROTOCOLS)}")
    dev_fraction = _check_fraction(dev_fraction, "dev_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    seed = int(seed)
    splits = ds.splits

    declared = (not ds.builtin) and "train" in splits and "test" in splits
    official_splits = proto == "standard" and "train" in splits and "test" in splits
    if declared or official_splits:
        train = splits["train"].reset_index(drop=True)
        test = splits["test"].reset_index(drop=True)
        if proto == "disjoint":
            train = _drop_shared(train, [test] + ([splits["dev"]] if "dev" in splits else []))
        if "dev" in splits:
            dev = splits["dev"].reset_index(drop=True)
        elif proto == "disjoint":
            train, dev = _grouped_split(train, dev_fraction, seed, f"train split of '{ds.name}'")
        else:
            train, dev = _split(train, dev_fraction, seed, f"train split of '{ds.name}'")
        return {"train": train, "dev": dev, "test": test}

    table = ds.official()
    if test_fraction == 0.0:
        raise TunerError(f"test_fraction must be > 0 for '{ds.name}' (it has no official train split); e.g. 0.3")
    split = _grouped_split if proto == "disjoint" else _split
    rest, test = split(table, test_fraction, seed, f"dataset '{ds.name}'")
    train, dev = split(rest, dev_fraction, seed, f"train part of '{ds.name}'")
    return {"train": train, "dev": dev, "test": test}


def _nli_transfer_splits(ds: Dataset) -> dict[str, pd.DataFrame]:
    """``nli-transfer``: NLI sets train (``train`` split, else every row), STS sets are scored."""
    if ds.task == "nli":
        train = ds.splits["train"] if "train" in ds.splits else pd.concat(list(ds.splits.values()), ignore_index=True)
        return {"train": train.reset_index(drop=True), "dev": train.iloc[0:0], "test": train.iloc[0:0]}
    if ds.task != "sts":
        raise TunerError(f"dataset '{ds.name}' is {ds.task} data; the nli-transfer protocol trains on NLI data "
                         "and scores STS sets only")
    test = ds.official().reset_index(drop=True)
    dev = ds.splits["dev"].reset_index(drop=True) if "dev" in ds.splits else test.iloc[0:0]
    return {"train": test.iloc[0:0], "dev": dev, "test": test}


def subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` seeded random rows of ``df`` (``max_train_examples``).

    ``n`` None or ``>= len(df)`` returns ``df`` unchanged; otherwise the sample keeps a fresh
    index. The same seed always picks the same rows.
    """
    if n is None:
        return df
    try:
        k = int(n)
    except (TypeError, ValueError):
        raise TunerError(f"max_train_examples must be a positive integer, got {n!r}") from None
    if k < 1:
        raise TunerError(f"max_train_examples must be a positive integer, got {n}; leave it unset to use all rows")
    if k >= len(df):
        return df
    return df.sample(n=k, random_state=int(seed)).reset_index(drop=True)
