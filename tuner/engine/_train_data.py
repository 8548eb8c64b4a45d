"""What the training loop trains on: scored pairs (:class:`PairData`), triplets with one or more
hard negatives (:class:`TripletData`), and the two views of NLI rows or unscored pairs/triplets
(:class:`NliTrainData`); plus the text identity a loss's duplicate rule reads (:func:`text_ids`).
Built by :mod:`tuner.engine._prepare`, read by :mod:`tuner.engine._train`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from tuner.errors import TunerError


@dataclass
class PairData:
    """Sentence pairs with labels normalised to 0..1 (the loss input)."""

    text1: list[str]
    text2: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TripletData:
    """Triplets for the triplet losses; ``negative[i]`` is None for a row without a hard negative (an NLI
    premise without a contradiction, unscored pairs). ``more``: further negative columns (``negative_2``,
    ...; mined hard negatives), None where a row has fewer; every one joins the batch's candidates."""

    anchor: list[str]
    positive: list[str]
    negative: list[Optional[str]]
    more: list[list[Optional[str]]] = field(default_factory=list)

    @property
    def negatives(self) -> list[list[Optional[str]]]:
        """Every negative column, ``negative`` first."""
        return [self.negative, *self.more]

    def __len__(self) -> int:
        return len(self.anchor)


@dataclass
class NliTrainData:
    """Two views of the same NLI rows (:mod:`tuner.data.nli`); a view is None when the rows give none
    (``missing`` says why), which is an error only when a loss that needs it is on."""

    pairs: Optional[PairData]
    triplets: Optional[TripletData]
    missing: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return max(len(self.pairs or ()), len(self.triplets or ()))


def nli_train_data(df: pd.DataFrame, neutral: "float | str | None", where: str) -> NliTrainData:
    """Scored pairs (neutral by ``neutral``) and triplets (anchors without a contradiction kept) of NLI rows."""
    from tuner.data.nli import nli_pairs, nli_triplets

    views: dict[str, Any] = {"pairs": None, "triplets": None}
    missing: dict[str, str] = {}
    try:
        frame = nli_pairs(df, neutral=neutral, where=where)
        views["pairs"] = pairs_from_frame(frame, "sts", (0.0, 1.0))
    except TunerError as exc:
        missing["pairs"] = str(exc)
    try:
        t = nli_triplets(df, no_contradiction="keep", where=where)
        views["triplets"] = TripletData(t["anchor"].tolist(), t["positive"].tolist(), t["negative"].tolist())
    except TunerError as exc:
        missing["triplets"] = str(exc)
    return NliTrainData(views["pairs"], views["triplets"], missing)


def pairs_from_frame(df: pd.DataFrame, task: str, score_range: "tuple[float, float] | None" = None) -> PairData:
    """STS rows -> (sentence1, sentence2, score scaled to 0..1); classification rows -> the seed's
    duplicated pairs (sentence, sentence, label)."""
    if task == "sts":
        lo, hi = score_range or (0.0, 5.0)
        labels = (df["score"].to_numpy(dtype=np.float64) - lo) / (hi - lo)
        return PairData(df["sentence1"].astype(str).tolist(), df["sentence2"].astype(str).tolist(),
                        np.clip(labels, 0.0, 1.0).astype(np.float32))
    if task == "classification":
        texts = df["sentence"].astype(str).tolist()
        return PairData(texts, list(texts), df["label"].to_numpy(dtype=np.float32))
    raise TunerError(f"unknown task '{task}'; use 'sts' or 'classification'")


def text_ids(*columns: Sequence[str | None]) -> tuple[np.ndarray, ...]:
    """One int64 per text of each column, equal = the identical string in any of the columns, -1 for None
    (a triplet without a hard negative): a view's text identity, indexed per batch like its token ids."""
    codes = pd.factorize(pd.Series([t for column in columns for t in column], dtype=object))[0].astype(np.int64)
    return tuple(np.split(codes, np.cumsum([len(c) for c in columns])[:-1]))
