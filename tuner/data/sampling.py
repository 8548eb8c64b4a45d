"""Evaluation samples (``max_eval_examples``): stratified, drawn independently, and checked for how
representative they are.

Scoring on the full dev and test files is the default. A sample is for budgets that cannot afford
them, and it must not be easier or harder than the file it stands for:

* **Stratified.** STS rows are drawn per score band (``SCORE_BANDS`` quantile bands of the gold
  score), classification rows per label, each band in proportion to its size (largest remainder),
  so a 200-pair sample has the file's spread of similarities, which is what a Spearman correlation
  is sensitive to.
* **Independent.** Every (dataset, split, size) has its own random stream (:func:`sample_seed`).
  The earlier rule, ``df.sample(n, random_state=42)``, made the 150, 200 and 750-pair samples
  nested prefixes of one permutation, and dev and test of a set shared it; that prefix of STS-B's
  test file happened to be easy (a word-overlap baseline scored 66.6 on it against 56.5 on the
  full file), which no other size could reveal.
* **Checked.** :func:`representativeness` puts one model-free figure of the sample beside the same
  figure on the full file: for STS the Spearman of word-overlap (Jaccard) similarity with the gold
  scores, for classification the majority-label rate. The study records it for every scored split.
"""
from __future__ import annotations

import re
import zlib
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from tuner.errors import TunerError

SCORE_BANDS = 10
SAMPLE_RULE = f"stratified by score ({SCORE_BANDS} quantile bands; classification: by label), one stream per split"
_WORD = re.compile(r"\w+")


def sample_seed(seed: int, dataset: str, split: str, n: int) -> np.random.Generator:
    """The random stream of one sample: a different (dataset, split, size) gives an unrelated draw."""
    return np.random.default_rng([int(seed), zlib.crc32(dataset.encode()), zlib.crc32(split.encode()), int(n)])


def strata(df: pd.DataFrame) -> pd.Series:
    """The band of each row: its label (classification), or its gold score's quantile band (STS)."""
    if "label" in df.columns and "score" not in df.columns:
        return df["label"].astype(str)
    ranks = df["score"].rank(method="first")  # ties split evenly, so a discrete score still fills every band
    bands = min(SCORE_BANDS, len(df))
    return pd.Series(np.ceil(ranks * bands / len(df)).astype(int), index=df.index)


def _allocate(sizes: pd.Series, n: int) -> pd.Series:
    """Rows per band, proportional to its size, summing to ``n`` (largest remainder)."""
    exact = sizes * n / sizes.sum()
    counts = np.floor(exact).astype(int)
    short = n - int(counts.sum())
    order = (exact - counts).sort_values(ascending=False, kind="stable").index[:short]
    counts[order] += 1
    return counts.clip(upper=sizes)


def eval_sample(df: pd.DataFrame, n: Optional[int], *, dataset: str, split: str, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of one dev/test (or classification train) split, stratified (module docstring).

    ``n`` None or ``>= len(df)`` keeps the whole split; the kept rows stay in file order."""
    if n is None:
        return df
    k = int(n)
    if k < 1:
        raise TunerError(f"max_eval_examples must be a positive integer, got {n}; leave it unset to score full files")
    if k >= len(df):
        return df
    rng = sample_seed(seed, dataset, split, k)
    band = strata(df).to_numpy()
    counts = _allocate(pd.Series(band).value_counts().sort_index(), k)
    keep: list[int] = []
    for value, count in counts.items():
        keep.extend(rng.choice(np.flatnonzero(band == value), size=int(count), replace=False))
    return df.iloc[sorted(keep)].reset_index(drop=True)


def word_overlap(text1: "pd.Series", text2: "pd.Series") -> np.ndarray:
    """Jaccard similarity of the lower-cased word sets of each pair (a model-free STS baseline)."""
    out = np.empty(len(text1))
    for i, (a, b) in enumerate(zip(text1.astype(str), text2.astype(str))):
        wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
        out[i] = len(wa & wb) / len(wa | wb) if wa | wb else 0.0
    return out


def _figure(df: pd.DataFrame) -> float:
    if "score" in df.columns:
        rho = spearmanr(word_overlap(df["sentence1"], df["sentence2"]), df["score"]).statistic
        return round(float(rho) * 100, 2) if np.isfinite(rho) else float("nan")
    return round(float(df["label"].value_counts(normalize=True).max()) * 100, 2)


def representativeness(sample: pd.DataFrame, full: pd.DataFrame) -> dict[str, Any]:
    """How a scored split compares with its file: sizes and one model-free figure on both.

    STS: ``word_overlap_spearman`` (x100) of the sample and of the full split; classification:
    ``majority_rate`` (%, the share of the most frequent label). A sample far from its file on this
    figure is easier or harder than the file, whatever model is scored on it."""
    name = "word_overlap_spearman" if "score" in full.columns else "majority_rate"
    out: dict[str, Any] = {"rows": len(sample), "of": len(full), "figure": name}
    if len(sample) < len(full):
        out.update(sample=_figure(sample), full=_figure(full), rule=SAMPLE_RULE)
    else:
        out.update(full=_figure(full))
    return out


def rows_line(report: dict[str, Any]) -> str:
    """One line of a recorded ``eval_rows`` report: per split, the rows scored and the figure on both."""
    parts = []
    for split in ("dev", "test"):
        r = report.get(split)
        if not isinstance(r, dict):
            continue
        figure = "word-overlap Spearman" if r.get("figure") == "word_overlap_spearman" else "majority label %"
        if r.get("rows", 0) < r.get("of", 0):
            parts.append(f"{split} a stratified sample of {r['rows']:,} of {r['of']:,} rows ({figure} "
                         f"{r.get('sample')} on the sample, {r.get('full')} on the file)")
        else:
            parts.append(f"{split} the full file, {r.get('of', 0):,} rows")
    return "; ".join(parts) or "not recorded"
