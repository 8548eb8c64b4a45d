"""Unscored training data: (anchor, positive) pairs and (anchor, positive, negative...) triplets.

What people who fine-tune embedding models mostly bring: a question and its answer, a query and a
relevant passage, optionally with one or more passages that do not answer it. Such a table is a
training set of its own *shape* (``pairs`` or ``triplets``, the :class:`~tuner.data.registry.Dataset`
task), scored on eval sets of another task (STS, classification, retrieval), like NLI rows.

Columns ``anchor``, ``positive`` and, for triplets, ``negative`` plus any number of ``negative_2``,
``negative_3``, ... (sentence-transformers' naming); :func:`apply_columns` renames other names first
(``--columns anchor=question,positive=answer,negative=wrong`` or ``columns = {...}`` in a study's
``[train]``). The anchor, the positive and the first negative must be text in every row; a later
negative may be empty (rows with fewer negatives). Every problem is one line naming the column and
the 1-based data row.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from tuner.errors import TunerError

PAIRS = "pairs"
TRIPLETS = "triplets"
SHAPED_TASKS = (PAIRS, TRIPLETS)
ANCHOR, POSITIVE, NEGATIVE = "anchor", "positive", "negative"
_EXTRA_NEGATIVE = re.compile(r"^negative_(\d+)$")
#: Names ``--columns`` may map to: the columns of every shape tuner reads.
TARGET_COLUMNS = (ANCHOR, POSITIVE, NEGATIVE, "sentence1", "sentence2", "score", "sentence", "label",
                  "premise", "hypothesis")


def negative_columns(columns: "pd.Index | list[str]") -> list[str]:
    """``negative`` then ``negative_2``, ``negative_3``, ... in their numeric order."""
    extra = sorted((int(m.group(1)), c) for c in map(str, columns) if (m := _EXTRA_NEGATIVE.match(c)))
    return ([NEGATIVE] if NEGATIVE in columns else []) + [c for _, c in extra]


def shape_of(columns: "pd.Index | list[str]") -> Optional[str]:
    """``triplets`` / ``pairs`` when the columns are an anchor and a positive (with negatives), else None."""
    names = {str(c) for c in columns}
    if not {ANCHOR, POSITIVE} <= names:
        return None
    return TRIPLETS if negative_columns(list(names)) else PAIRS


def check_columns_mapping(mapping: Mapping[str, str], key: str = "columns") -> dict[str, str]:
    """``{target: source}``: targets tuner reads (anchor, positive, negative, negative_N, sentence1, ...)."""
    if not isinstance(mapping, Mapping):
        raise TunerError(f"{key} must map tuner's column names to yours, e.g. anchor=question,positive=answer")
    out = {}
    for target, source in mapping.items():
        target, source = str(target).strip(), str(source).strip()
        if target not in TARGET_COLUMNS and not _EXTRA_NEGATIVE.match(target):
            raise TunerError(f"{key}: '{target}' is not a column tuner reads; map to {', '.join(TARGET_COLUMNS)} or "
                             "negative_2, negative_3, ...")
        if not source:
            raise TunerError(f"{key}: '{target}' is mapped to an empty column name; write {target}=YOUR_COLUMN")
        out[target] = source
    if len(set(out.values())) != len(out):
        raise TunerError(f"{key}: one of your columns is mapped twice ({mapping}); map each column once")
    return out


def parse_columns(text: str, flag: str = "--columns") -> dict[str, str]:
    """``anchor=question,positive=answer`` -> ``{"anchor": "question", "positive": "answer"}``."""
    pairs = [p for p in (s.strip() for s in str(text).split(",")) if p]
    if not pairs or any("=" not in p for p in pairs):
        raise TunerError(f"{flag} '{text}': write tuner's name=your column name, comma-separated, "
                         "e.g. anchor=question,positive=answer,negative=wrong_answer")
    return check_columns_mapping(dict(p.split("=", 1) for p in pairs), flag)


def apply_columns(df: pd.DataFrame, mapping: Optional[Mapping[str, str]], where: str) -> pd.DataFrame:
    """Rename the user's columns to tuner's (``mapping``: target -> source); a missing one is one line."""
    if not mapping:
        return df
    mapping = check_columns_mapping(mapping)
    missing = [source for source in mapping.values() if source not in df.columns]
    if missing:
        raise TunerError(f"{where}: no column '{missing[0]}' (named by --columns); its columns are "
                         f"{', '.join(map(str, df.columns)) or 'none'}")
    clash = [t for t, s in mapping.items() if t in df.columns and t != s and t not in mapping.values()]
    if clash:
        raise TunerError(f"{where}: --columns maps '{mapping[clash[0]]}' to '{clash[0]}', but the file already has a "
                         f"column '{clash[0]}'; map that one too or drop it")
    return df.rename(columns={source: target for target, source in mapping.items()})


def validate_shaped(df: pd.DataFrame, shape: str, where: str) -> pd.DataFrame:
    """Checked ``anchor, positive[, negative, negative_2, ...]`` columns as str (empty later negatives: None)."""
    negatives = negative_columns(list(df.columns))
    if shape == TRIPLETS and not negatives:
        raise TunerError(f"{where}: no 'negative' column; triplets need anchor, positive, negative "
                         f"(found: {', '.join(map(str, df.columns))})")
    required = [ANCHOR, POSITIVE] + negatives[:1] if shape == TRIPLETS else [ANCHOR, POSITIVE]
    out = pd.DataFrame(index=range(len(df)))
    for col in required:
        if col not in df.columns:
            raise TunerError(f"{where}: column '{col}' is missing; {shape} need columns {', '.join(required)} "
                             f"(found: {', '.join(map(str, df.columns))}); rename yours with --columns {col}=NAME")
        values = df[col].reset_index(drop=True)
        bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
        if bad:
            raise TunerError(f"{where}: row {bad[0] + 1}: column '{col}' is empty or not text "
                             f"({values.iloc[bad[0]]!r}); every row needs a non-empty {col}")
        out[col] = values.astype(str)
    for col in (negatives[1:] if shape == TRIPLETS else []):  # later negatives: a row may have fewer
        out[col] = [v if isinstance(v, str) and v.strip() else None for v in df[col].reset_index(drop=True)]
    if len(out) == 0:
        raise TunerError(f"{where}: no data rows; add (anchor, positive{', negative' if shape == TRIPLETS else ''}) rows")
    return out



def header_columns(path: "str | Path") -> Optional[list[str]]:
    """The column names of a training file or ``save_to_disk`` folder, read from its header alone
    (None when they cannot be read that way; :func:`tuner.data.readers.read_table` then says why)."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if p.is_dir():
            info = next((f for f in (p / "dataset_info.json", p / "train" / "dataset_info.json") if f.is_file()), None)
            return list(json.loads(info.read_text()).get("features", {})) if info else None
        if suffix in (".csv", ".tsv"):
            return [str(c) for c in pd.read_csv(p, nrows=0, sep="\t" if suffix == ".tsv" else ",",
                                                encoding="utf-8-sig").columns]
        if suffix == ".parquet":
            import pyarrow.parquet as pq  # a second to import; only Parquet files need it

            return list(pq.read_schema(p).names)
        if suffix == ".jsonl":
            with open(p, encoding="utf-8-sig") as fh:
                first = next((line for line in fh if line.strip()), "")
            return list(json.loads(first)) if first else None
    except (OSError, ValueError, TypeError):
        return None
    return None


def file_shape(path: "str | Path", mapping: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """``pairs`` / ``triplets`` for a training file of that shape (after the ``columns`` mapping), else None."""
    columns = header_columns(path)
    if columns is None:
        return None
    renamed = {source: target for target, source in (mapping or {}).items()}
    return shape_of([renamed.get(c, c) for c in columns])
