"""Column and value checks for STS and classification tables.

Every problem raises a one-line :class:`~tuner.errors.TunerError` that names the file (or
DataFrame), the column and, for bad values, the 1-based data row (the header is not counted),
and says how to fix it.

Blank text policy:

* STS rows: a blank ``sentence1``/``sentence2`` is always an error (no built-in has one).
* Classification: blank ``sentence`` is an error for custom data (``allow_blank=False``), but
  built-in CR and MPQA keep their 4 + 3 empty sentences (``allow_blank=True``) because SentEval
  keeps them, so the row counts match SentEval's (CR 3775, MPQA 10606).
* Missing values (NaN/None, e.g. from Parquet/JSON) are always an error.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tuner.data.shapes import SHAPED_TASKS, shape_of, validate_shaped
from tuner.errors import TunerError

STS_COLUMNS = ("sentence1", "sentence2", "score")
CLASSIFICATION_COLUMNS = ("sentence", "label")
NLI_COLUMNS = ("premise", "hypothesis", "label")
REQUIRED_COLUMNS = {"sts": STS_COLUMNS, "classification": CLASSIFICATION_COLUMNS, "nli": NLI_COLUMNS}
#: NLI labels in the order of their integer ids (SNLI/MultiNLI on the hub: 0, 1, 2).
NLI_LABELS = ("entailment", "neutral", "contradiction")
SPLIT_COLUMN = "split"
SPLIT_VALUES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}

# Common alternative column names -> the name we need (used for hints only; we never rename).
_COLUMN_HINTS = {
    "sentence1": ("sentence_a", "sentence_1", "sent1", "s1", "text1", "text_a", "text_1", "premise", "query", "anchor", "sentence_A", "question1"),
    "sentence2": ("sentence_b", "sentence_2", "sent2", "s2", "text2", "text_b", "text_2", "hypothesis", "positive", "sentence_B", "question2"),
    "score": ("similarity", "similarity_score", "relatedness_score", "relatedness", "gold", "gold_score", "label", "labels", "sim", "rating"),
    "sentence": ("text", "sentences", "sent", "review", "content", "document", "input"),
    "label": ("labels", "class", "target", "y", "category", "polarity", "sentiment"),
    "premise": ("sentence1", "sentence_a", "sent1", "s1", "text_a", "anchor", "sentence_A"),
    "hypothesis": ("sentence2", "sentence_b", "sent2", "s2", "text_b", "sentence_B"),
}

_TEXT_LABELS = {
    "pos": 1, "positive": 1, "neg": 0, "negative": 0, "true": 1, "false": 0, "yes": 1, "no": 0,
    "objective": 1, "subjective": 0,
}


def _fmt_cols(columns) -> str:
    cols = [str(c) for c in columns]
    return ", ".join(cols) if cols else "none"


def _more(n: int) -> str:
    return f" (and {n} more row{'s' if n != 1 else ''})" if n > 0 else ""


def _short(value, limit: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Strip whitespace/BOM from header names and lower-case ones that match a known column."""
    known = {c for cols in REQUIRED_COLUMNS.values() for c in cols} | {SPLIT_COLUMN}
    mapping = {}
    for col in df.columns:
        clean = str(col).replace("\ufeff", "").strip()
        if clean.lower() in known and clean.lower() not in df.columns:
            clean = clean.lower()
        if clean != col:
            mapping[col] = clean
    return df.rename(columns=mapping) if mapping else df


def infer_task(df: pd.DataFrame, where: str) -> str:
    """``sts``, ``classification``, ``nli``, ``pairs`` or ``triplets`` from the column names of ``df``."""
    lower = {str(c).strip().lower() for c in df.columns}
    if {"premise", "hypothesis"} <= lower:
        return "nli"
    shape = shape_of(list(df.columns))
    if shape is not None:
        return shape
    pair_hints = {h.lower() for h in _COLUMN_HINTS["sentence1"] + _COLUMN_HINTS["sentence2"]}
    single_hints = {h.lower() for h in _COLUMN_HINTS["sentence"] + _COLUMN_HINTS["label"]}
    if lower & {"sentence1", "sentence2", "score"}:
        return "sts"
    if "sentence" in lower:
        return "classification"
    if lower & pair_hints:
        return "sts"
    if lower & ({"label"} | single_hints):
        return "classification"
    raise TunerError(
        f"{where}: cannot tell the task from its columns (found: {_fmt_cols(df.columns)}); an STS file "
        f"needs columns sentence1, sentence2, score, a classification file sentence, label"
        f", an NLI file premise, hypothesis, label, unscored pairs anchor, positive and triplets anchor, positive, "
        f"negative (rename yours with --columns, e.g. anchor=question,positive=answer, or pass --task)"
    )


def check_columns(df: pd.DataFrame, task: str, where: str) -> None:
    """Raise when a required column of ``task`` is missing, naming the ones found."""
    required = REQUIRED_COLUMNS[task]
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    kind = {"sts": "an STS file", "nli": "an NLI file"}.get(task, "a classification file")
    hints = []
    present = {str(c).lower(): str(c) for c in df.columns}
    for col in missing:
        for alt in _COLUMN_HINTS.get(col, ()):
            if alt.lower() in present and present[alt.lower()] not in required:
                hints.append(f"rename '{present[alt.lower()]}' to '{col}'")
                break
    what = f"column '{missing[0]}' is missing" if len(missing) == 1 else (
        "columns " + ", ".join(f"'{c}'" for c in missing) + " are missing")
    hint = f"; {', '.join(hints)}" if hints else ""
    raise TunerError(
        f"{where}: {what}; {kind} needs columns {', '.join(required)} (found: {_fmt_cols(df.columns)}){hint}"
    )


def check_not_empty(df: pd.DataFrame, where: str) -> None:
    if len(df) == 0:
        raise TunerError(f"{where}: no data rows (only a header or nothing at all); add rows below the header")


def _text_column(df: pd.DataFrame, col: str, where: str, allow_blank: bool) -> pd.Series:
    values = df[col]
    missing = values.isna().to_numpy()
    if missing.any():
        idx = np.flatnonzero(missing)
        raise TunerError(
            f"{where}: row {idx[0] + 1}: column '{col}' is missing (NaN/null){_more(len(idx) - 1)}; "
            f"fill in the text or delete the row"
        )
    text = values.astype(str)
    if not allow_blank:
        blank = (text.str.strip() == "").to_numpy()
        if blank.any():
            idx = np.flatnonzero(blank)
            raise TunerError(
                f"{where}: row {idx[0] + 1}: column '{col}' is empty{_more(len(idx) - 1)}; "
                f"fill in the text or delete the row"
            )
    return text.reset_index(drop=True)


def validate_score_range(score_range, where: str = "score_range") -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in score_range)
    except (TypeError, ValueError):
        raise TunerError(f"{where}: expected two numbers (low, high), got {score_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise TunerError(f"{where}: expected finite low < high, got ({lo}, {hi}); e.g. (0, 5)")
    return lo, hi


def validate_sts(df: pd.DataFrame, where: str, score_range: tuple[float, float] | None = (0.0, 5.0)) -> pd.DataFrame:
    """Checked STS frame: sentence1, sentence2 (str), score (float64), fresh index."""
    check_columns(df, "sts", where)
    check_not_empty(df, where)
    s1 = _text_column(df, "sentence1", where, allow_blank=False)
    s2 = _text_column(df, "sentence2", where, allow_blank=False)
    raw = df["score"].reset_index(drop=True)
    if raw.dtype == bool:
        raise TunerError(f"{where}: column 'score' holds true/false values; an STS score must be a number (e.g. 0..5)")
    if pd.api.types.is_numeric_dtype(raw):
        score = raw.astype("float64")
    else:
        score = pd.to_numeric(raw.astype("object").map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    bad = score.isna().to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        value = raw.iloc[idx[0]]
        shown = "is empty" if (value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "") \
            else f"{_short(value)} is not a number"
        raise TunerError(
            f"{where}: row {idx[0] + 1}: column 'score' {shown}{_more(len(idx) - 1)}; "
            f"every score must be a number"
            + (f" in {score_range[0]:g}..{score_range[1]:g}" if score_range else "")
        )
    score = score.astype("float64")
    if score_range is not None:
        lo, hi = score_range
        out = ((score < lo) | (score > hi) | ~np.isfinite(score)).to_numpy()
        if out.any():
            idx = np.flatnonzero(out)
            raise TunerError(
                f"{where}: row {idx[0] + 1}: score {score.iloc[idx[0]]:g} is outside {lo:g}..{hi:g}"
                f"{_more(len(idx) - 1)}; fix the score, or declare the scale with score_range=(low, high)"
            )
    return pd.DataFrame({"sentence1": s1, "sentence2": s2, "score": score})


def _parse_label(value):
    """int 0/1-ish value, or None when it is not an integer."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str):
        v = value.strip()
        try:
            f = float(v)
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and f.is_integer() else None
    return None


def validate_classification(df: pd.DataFrame, where: str, allow_blank: bool = False) -> pd.DataFrame:
    """Checked classification frame: sentence (str), label (int64 0/1), fresh index."""
    check_columns(df, "classification", where)
    check_not_empty(df, where)
    sentence = _text_column(df, "sentence", where, allow_blank=allow_blank)
    raw = df["label"].reset_index(drop=True)
    missing = raw.isna().to_numpy() | raw.astype(str).str.strip().eq("").to_numpy()
    if missing.any():
        idx = np.flatnonzero(missing)
        raise TunerError(
            f"{where}: row {idx[0] + 1}: column 'label' is empty{_more(len(idx) - 1)}; every row needs a label 0 or 1"
        )
    if pd.api.types.is_integer_dtype(raw) or raw.dtype == bool:
        labels = raw.astype("int64")
    else:
        parsed = raw.map(_parse_label)
        nonint = parsed.isna().to_numpy()
        if nonint.any():
            idx = np.flatnonzero(nonint)
            strings = sorted({str(v).strip() for v in raw[nonint]})
            if all(_parse_label(v) is None and isinstance(v, str) for v in raw[nonint]) and len(idx) == len(raw):
                known = [s for s in strings if s.lower() in _TEXT_LABELS]
                example = ", ".join(f"{s} -> {_TEXT_LABELS[s.lower()]}" for s in known[:2]) if len(known) == len(strings) else \
                    ", ".join(f"{s} -> {i}" for i, s in enumerate(strings[:2]))
                shown = ", ".join(repr(s) for s in strings[:5]) + (", ..." if len(strings) > 5 else "")
                raise TunerError(
                    f"{where}: column 'label' holds text labels ({shown}); labels must be 0/1, "
                    f"map them to integers (e.g. {example})"
                )
            raise TunerError(
                f"{where}: row {idx[0] + 1}: label {_short(raw.iloc[idx[0]])} is not 0 or 1{_more(len(idx) - 1)}; "
                f"labels must be the integers 0/1"
            )
        labels = parsed.astype("int64")
    classes = sorted(int(v) for v in pd.unique(labels))
    if len(classes) > 2:
        shown = ",".join(str(c) for c in classes[:10]) + (",..." if len(classes) > 10 else "")
        raise TunerError(
            f"{where}: column 'label' has {len(classes)} classes {{{shown}}}; "
            f"only binary classification (labels 0/1) is supported"
        )
    bad = ~labels.isin((0, 1)).to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        raise TunerError(
            f"{where}: row {idx[0] + 1}: label {labels.iloc[idx[0]]} is not 0 or 1{_more(len(idx) - 1)} "
            f"(found classes {{{','.join(str(c) for c in classes)}}}); map the two classes to 0 and 1"
        )
    return pd.DataFrame({"sentence": sentence, "label": labels.astype("int64")})


def _nli_label(value) -> str | None:
    """Canonical NLI label for a text label (any case) or an id 0/1/2, else None."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in NLI_LABELS:
            return text
    number = _parse_label(value)
    if number is not None and 0 <= number < len(NLI_LABELS) and not isinstance(value, (bool, np.bool_)):
        return NLI_LABELS[number]
    return None


def validate_nli(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Checked NLI frame: premise, hypothesis (str) and label (str: entailment/neutral/contradiction).

    Labels may be given as those words (any case) or as the hub's ids 0/1/2 (0 entailment,
    1 neutral, 2 contradiction). Pairs without a gold label (SNLI's ``-``, the hub's ``-1``) are
    an error: drop them first.
    """
    check_columns(df, "nli", where)
    check_not_empty(df, where)
    premise = _text_column(df, "premise", where, allow_blank=False)
    hypothesis = _text_column(df, "hypothesis", where, allow_blank=False)
    raw = df["label"].reset_index(drop=True)
    labels = raw.map(_nli_label)
    bad = labels.isna().to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        value = raw.iloc[idx[0]]
        gold_hint = " (a pair without a gold label: drop such rows)" if str(value).strip() in ("-", "-1") else ""
        raise TunerError(
            f"{where}: row {idx[0] + 1}: label {_short(value)} is not an NLI label{gold_hint}{_more(len(idx) - 1)}; "
            f"use entailment, neutral or contradiction (or 0, 1, 2 in that order)"
        )
    return pd.DataFrame({"premise": premise, "hypothesis": hypothesis, "label": labels.astype(str)})


def validate_table(df: pd.DataFrame, task: str, where: str, *, score_range=None, allow_blank: bool = False) -> pd.DataFrame:
    if task == "nli":
        return validate_nli(df, where)
    if task in SHAPED_TASKS:
        return validate_shaped(df, task, where)
    if task == "sts":
        return validate_sts(df, where, score_range)
    return validate_classification(df, where, allow_blank=allow_blank)


def check_task(task: str | None) -> str | None:
    if task is None:
        return None
    t = str(task).strip().lower()
    if t in ("sts", "similarity", "regression"):
        return "sts"
    if t in ("classification", "cls", "clf", "senteval"):
        return "classification"
    if t in ("nli", "entailment", "natural-language-inference"):
        return "nli"
    if t in SHAPED_TASKS:
        return t
    raise TunerError(f"unknown task '{task}'; use 'sts', 'classification', 'nli', 'pairs' or 'triplets'")


def check_min_rows(df: pd.DataFrame, batch_size: int, what: str) -> None:
    """Raise when ``df`` has fewer rows than one batch.

    ``what`` names the table, e.g. ``"train split of 'my'"``.
    """
    n = len(df)
    if n < int(batch_size):
        raise TunerError(
            f"{what} has {n} row{'s' if n != 1 else ''}, fewer than one batch ({int(batch_size)}); "
            f"lower --batch-size or add data"
        )
