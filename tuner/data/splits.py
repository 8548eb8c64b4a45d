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
* Custom data behaves like the test-only built-ins (its single ``all`` table is split), unless
  it had a ``split`` column: then its declared train/dev/test rows are used under both protocols
  (dev carved from train when it declares none).
"""
from __future__ import annotations

import pandas as pd

from tuner.errors import TunerError

from .registry import Dataset

PROTOCOLS = ("seed", "standard")


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


def protocol_splits(
    ds: Dataset,
    protocol: str = "standard",
    seed: int = 42,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.3,
) -> dict[str, pd.DataFrame]:
    """Train/dev/test frames of ``ds`` under ``protocol`` (see module docstring)."""
    proto = str(protocol).strip().lower()
    if proto not in PROTOCOLS:
        raise TunerError(f"unknown protocol '{protocol}'; use one of: {', '.join(PROTOCOLS)}")
    dev_fraction = _check_fraction(dev_fraction, "dev_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    seed = int(seed)
    splits = ds.splits

    declared = (not ds.builtin) and "train" in splits and "test" in splits
    official_splits = proto == "standard" and "train" in splits and "test" in splits
    if declared or official_splits:
        train = splits["train"].reset_index(drop=True)
        test = splits["test"].reset_index(drop=True)
        if "dev" in splits:
            dev = splits["dev"].reset_index(drop=True)
        else:
            train, dev = _split(train, dev_fraction, seed, f"train split of '{ds.name}'")
        return {"train": train, "dev": dev, "test": test}

    table = ds.official()
    if test_fraction == 0.0:
        raise TunerError(f"test_fraction must be > 0 for '{ds.name}' (it has no official train split); e.g. 0.3")
    rest, test = _split(table, test_fraction, seed, f"dataset '{ds.name}'")
    train, dev = _split(rest, dev_fraction, seed, f"train part of '{ds.name}'")
    return {"train": train, "dev": dev, "test": test}


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
