"""NLI data (premise, hypothesis, label) turned into training signal for the STS losses.

Rows are ``premise, hypothesis, label`` with label ``entailment`` / ``neutral`` /
``contradiction`` (or the hub's ids 0 / 1 / 2); :func:`tuner.data.load_dataset` returns them as a
``Dataset`` with ``task == "nli"`` (built-ins ``snli``, ``allnli``; any file or DataFrame with
those columns). Two conversions, both pure DataFrame -> DataFrame and deterministic:

**Scored pairs** (:func:`nli_pairs`) for the pair losses (cos-MSE, CoSENT, AnglE): each row
becomes ``sentence1 = premise, sentence2 = hypothesis`` with ``score`` on a 0..1 scale:
entailment ``1.0``, contradiction ``0.0`` and neutral by the ``neutral`` argument:

* ``None`` (default): neutral pairs are dropped, as AnglE does for NLI (its training data keeps
  entailment = 1 and contradiction = 0 only);
* a number in [0, 1], e.g. ``0.5``: neutral pairs are kept with that score (with tuner's
  in-batch-negatives positive threshold of 0.6 such a pair counts as a negative).

The result is an STS frame with ``score_range = (0, 1)`` (:func:`nli_pairs_dataset` wraps it in
a ``Dataset``), so the existing STS training path can take it as it is.

**Triplets** (:func:`nli_triplets`) for in-batch negatives with hard negatives (SimCSE,
Gao et al. 2021): ``anchor = premise``, ``positive`` = a hypothesis it entails, ``negative`` = a
hypothesis of the *same* premise that contradicts it. One triplet per (premise, entailed
hypothesis). When a premise has several contradictions they are used in turn (the k-th entailed
hypothesis, in file order, gets the (k mod m)-th contradiction), so no random choice is involved.
An anchor with an entailment but no contradiction is handled by ``no_contradiction``:

* ``"drop"`` (default): the triplet is dropped, as in SimCSE's NLI data, which only has premises
  with both an entailment and a contradiction;
* ``"keep"``: it is kept as a pair without hard negative (``negative`` is ``None``); it then
  only gets the other rows of its batch as negatives.

Premises without an entailed hypothesis give no triplet (there is no positive). Neutral
hypotheses are not used.

**Training** (``tuner finetune --train snli --protocol nli-transfer``, task ``nli``): the engine
builds both views from the same rows: scored pairs (neutral by ``RunConfig.nli_neutral``) for the
pair losses and triplets with ``no_contradiction="keep"`` for in-batch negatives, whose missing
hard negative is simply absent from the batch's logits (:func:`tuner.losses.in_batch_negatives.
hard_negatives_loss`). ``max_train_examples`` samples whole premises (:func:`subsample_premises`),
so a premise keeps its entailment and its contradiction together.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from tuner.errors import TunerError

from .registry import Dataset
from .validate import NLI_LABELS, validate_nli

ENTAILMENT, NEUTRAL, CONTRADICTION = NLI_LABELS
#: Score of an entailment / contradiction pair on the 0..1 scale of :func:`nli_pairs`.
ENTAILMENT_SCORE = 1.0
CONTRADICTION_SCORE = 0.0
PAIR_SCORE_RANGE = (0.0, 1.0)
NO_CONTRADICTION_RULES = ("drop", "keep")


def _checked(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """``df`` validated as NLI rows (labels normalised to the three words)."""
    if not isinstance(df, pd.DataFrame):
        raise TunerError(f"{where}: expected a DataFrame with columns premise, hypothesis, label, "
                         f"not {type(df).__name__}")
    return validate_nli(df, where)


def check_neutral(neutral: "float | str | None") -> float | None:
    """Validate the neutral rule: ``None``/``"drop"`` -> None, else a score in [0, 1]."""
    if neutral is None or (isinstance(neutral, str) and neutral.strip().lower() == "drop"):
        return None
    try:
        value = float(neutral)
    except (TypeError, ValueError):
        raise TunerError(f"neutral: expected 'drop' or a score between 0 and 1, got {neutral!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise TunerError(f"neutral: the score {value:g} is outside 0..1; use 'drop' or a score such as 0.5")
    return value


def nli_pairs(df: pd.DataFrame, *, neutral: "float | str | None" = None, where: str = "NLI data") -> pd.DataFrame:
    """Scored pairs ``sentence1, sentence2, score`` (0..1) from NLI rows; see the module doc for the rule.

    >>> rows = pd.DataFrame({"premise": ["p"] * 3, "hypothesis": ["e", "n", "c"],
    ...                      "label": ["entailment", "neutral", "contradiction"]})
    >>> nli_pairs(rows)["score"].tolist(), nli_pairs(rows, neutral=0.5)["score"].tolist()
    ([1.0, 0.0], [1.0, 0.5, 0.0])
    """
    rows = _checked(df, where)
    neutral_score = check_neutral(neutral)
    scores = {ENTAILMENT: ENTAILMENT_SCORE, CONTRADICTION: CONTRADICTION_SCORE, NEUTRAL: neutral_score}
    if neutral_score is None:
        rows = rows[rows["label"] != NEUTRAL]
    if rows.empty:
        raise TunerError(f"{where}: no entailment or contradiction rows left after dropping neutral pairs; "
                         "add such rows or keep neutral pairs with a score (e.g. neutral=0.5)")
    return pd.DataFrame({
        "sentence1": rows["premise"].to_numpy(),
        "sentence2": rows["hypothesis"].to_numpy(),
        "score": rows["label"].map(scores).astype("float64").to_numpy(),
    })


def nli_triplets(df: pd.DataFrame, *, no_contradiction: Literal["drop", "keep"] = "drop",
                 where: str = "NLI data") -> pd.DataFrame:
    """SimCSE-style triplets ``anchor, positive, negative`` from NLI rows; see the module doc for the rules.

    ``negative`` is ``None`` only for anchors kept by ``no_contradiction="keep"``. Rows come out in
    the order of the premises' first appearance, then of the entailed hypotheses.

    >>> rows = pd.DataFrame({"premise": ["p", "p", "p", "q"], "hypothesis": ["e1", "e2", "c", "e"],
    ...                      "label": ["entailment", "entailment", "contradiction", "entailment"]})
    >>> nli_triplets(rows).values.tolist()
    [['p', 'e1', 'c'], ['p', 'e2', 'c']]
    >>> nli_triplets(rows, no_contradiction="keep").values.tolist()[-1]
    ['q', 'e', None]
    """
    rule = str(no_contradiction).strip().lower()
    if rule not in NO_CONTRADICTION_RULES:
        raise TunerError(f"no_contradiction: expected 'drop' or 'keep', got {no_contradiction!r}")
    rows = _checked(df, where)
    entailed: dict[str, list[str]] = {}
    contradicting: dict[str, list[str]] = {}
    for premise, hypothesis, label in rows.itertuples(index=False, name=None):
        if label == ENTAILMENT:
            entailed.setdefault(premise, []).append(hypothesis)
            contradicting.setdefault(premise, [])
        elif label == CONTRADICTION:
            contradicting.setdefault(premise, []).append(hypothesis)
    out: list[tuple[str, str, "str | None"]] = []
    for premise, negatives in contradicting.items():  # dict order = first appearance of the premise
        for k, positive in enumerate(entailed.get(premise, ())):
            if negatives:
                out.append((premise, positive, negatives[k % len(negatives)]))
            elif rule == "keep":
                out.append((premise, positive, None))
    if not out:
        raise TunerError(f"{where}: no premise has both an entailed and a contradicting hypothesis, so there is no "
                         "triplet; use no_contradiction='keep' or add contradiction rows for the same premises")
    anchors, positives, negatives_out = zip(*out)
    return pd.DataFrame({"anchor": list(anchors), "positive": list(positives),
                         # object dtype keeps ``None`` (pandas' string dtype would turn it into NaN)
                         "negative": pd.Series(list(negatives_out), dtype=object)})


def nli_pairs_dataset(ds: Dataset, *, neutral: "float | str | None" = None) -> Dataset:
    """Every split of an NLI ``Dataset`` as scored pairs: an STS ``Dataset`` with ``score_range (0, 1)``."""
    if ds.task != "nli":
        raise TunerError(f"dataset '{ds.name}' is {ds.task} data, not NLI (premise, hypothesis, label)")
    splits = {split: nli_pairs(frame, neutral=neutral, where=f"{ds.name} ({split})")
              for split, frame in ds.splits.items()}
    return Dataset(name=ds.name, task="sts", splits=splits, source=ds.source, score_range=PAIR_SCORE_RANGE,
                   builtin=ds.builtin)


def nli_triplet_splits(ds: Dataset, *, no_contradiction: Literal["drop", "keep"] = "drop") -> dict[str, pd.DataFrame]:
    """Every split of an NLI ``Dataset`` as triplets (``anchor, positive, negative``)."""
    if ds.task != "nli":
        raise TunerError(f"dataset '{ds.name}' is {ds.task} data, not NLI (premise, hypothesis, label)")
    return {split: nli_triplets(frame, no_contradiction=no_contradiction, where=f"{ds.name} ({split})")
            for split, frame in ds.splits.items()}


def subsample_premises(df: pd.DataFrame, n: "int | None", seed: int) -> pd.DataFrame:
    """At most ``n`` NLI rows, taken as whole premises (all their hypotheses) in a seeded order.

    Premises are visited in a seeded random order and kept while the rows still fit ``n`` (at most ``n``
    rows; a first premise with more rows than ``n`` is kept alone). A row sample would split premises:
    2,000 random rows of SNLI's 19,666 keep a premise's entailment *and* contradiction for only
    about one premise in ten, leaving in-batch negatives almost without hard negatives.
    """
    if n is None or n >= len(df):
        return df.reset_index(drop=True)
    codes, uniques = pd.factorize(df["premise"])
    sizes = np.bincount(codes, minlength=len(uniques))
    keep = np.zeros(len(uniques), dtype=bool)
    total = 0
    for g in np.random.default_rng(int(seed)).permutation(len(uniques)):
        if total + sizes[g] <= n or total == 0:
            keep[g] = True
            total += int(sizes[g])
        if total >= n:
            break
    return df[keep[codes]].reset_index(drop=True)


def label_counts(df: pd.DataFrame) -> dict[str, int]:
    """Rows per label (all three labels present as keys)."""
    counts = df["label"].value_counts()
    return {label: int(counts.get(label, 0)) for label in NLI_LABELS}
