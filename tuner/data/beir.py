"""Retrieval sets in the BEIR layout: a corpus, queries, and which documents answer which query.

A folder (Thakur et al. 2021, "BEIR"; the layout sentence-transformers' and MTEB's retrieval tasks read)::

    <folder>/corpus.jsonl       {"_id": "d1", "title": "...", "text": "..."}   one document a line
    <folder>/queries.jsonl      {"_id": "q1", "text": "..."}                    one query a line
    <folder>/qrels/dev.tsv      query-id<TAB>corpus-id<TAB>score   (header row; score > 0 = relevant)
    <folder>/qrels/test.tsv

:func:`load_beir` reads it as a :class:`~tuner.data.registry.Dataset` with task ``retrieval``:
``splits`` holds each qrels file's relevant rows (``query_id, corpus_id, score``), ``corpus``
(``id, text``; the title and the text joined by a space, as BEIR's sentence-BERT models read them)
and ``queries`` (``id, text``) are shared by the splits. Every problem is one line naming the file
and the 1-based data row. Ids are strings, as in the files.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from tuner.data.registry import Dataset
from tuner.errors import TunerError

CORPUS = "corpus.jsonl"
QUERIES = "queries.jsonl"
QRELS = "qrels"
SPLITS = ("train", "dev", "test")


def is_beir_folder(path: "str | Path") -> bool:
    """True for a folder that holds a BEIR corpus (``corpus.jsonl``)."""
    return (Path(path) / CORPUS).is_file()


def _read_jsonl(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise TunerError(f"{path.parent}: no {path.name}; a retrieval folder needs {CORPUS}, {QUERIES} and "
                         f"{QRELS}/dev.tsv, {QRELS}/test.tsv (the BEIR layout)")
    ids: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for row, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TunerError(f"{path}: line {row} is not JSON ({exc.msg}); write one {what} object a line") from None
            if not isinstance(record, dict) or "_id" not in record or not isinstance(record.get("text"), str):
                raise TunerError(f"{path}: line {row} needs \"_id\" and \"text\" (a string); got "
                                 f"{sorted(record) if isinstance(record, dict) else type(record).__name__}")
            key = str(record["_id"])
            if key in seen:
                raise TunerError(f"{path}: line {row} repeats _id {key!r}; every {what} needs its own id")
            seen.add(key)
            title = record.get("title") or ""
            ids.append(key)
            texts.append(f"{title} {record['text']}".strip() if isinstance(title, str) else record["text"])
    if not ids:
        raise TunerError(f"{path} is empty; add at least one {what}")
    return pd.DataFrame({"id": ids, "text": texts})


def _read_qrels(path: Path, corpus_ids: set[str], query_ids: set[str]) -> pd.DataFrame:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["query-id", "corpus-id", "score"]:
        raise TunerError(f"{path}: the first row must be the header query-id<TAB>corpus-id<TAB>score")
    out: dict[str, list[Any]] = {"query_id": [], "corpus_id": [], "score": []}
    for row, fields in enumerate(rows[1:], start=1):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) < 3:
            raise TunerError(f"{path}: row {row} has {len(fields)} columns; write query-id<TAB>corpus-id<TAB>score")
        query, doc, score = fields[0].strip(), fields[1].strip(), fields[2].strip()
        try:
            value = float(score)
        except ValueError:
            raise TunerError(f"{path}: row {row}: score {score!r} is not a number; use 1 for relevant, 0 for not")
        if query not in query_ids:
            raise TunerError(f"{path}: row {row}: query-id {query!r} is not in {QUERIES}; add the query or drop the row")
        if doc not in corpus_ids:
            raise TunerError(f"{path}: row {row}: corpus-id {doc!r} is not in {CORPUS}; add the document or drop "
                             "the row")
        if value > 0:
            out["query_id"].append(query)
            out["corpus_id"].append(doc)
            out["score"].append(value)
    if not out["query_id"]:
        raise TunerError(f"{path} marks no document relevant (no row with score > 0); add relevance judgements")
    return pd.DataFrame(out)


def load_beir(folder: "str | Path", name: Optional[str] = None) -> Dataset:
    """The retrieval set in ``folder`` (see the module doc); its qrels files are its splits."""
    root = Path(folder)
    corpus = _read_jsonl(root / CORPUS, "document")
    queries = _read_jsonl(root / QUERIES, "query")
    corpus_ids, query_ids = set(corpus["id"]), set(queries["id"])
    splits = {split: _read_qrels(root / QRELS / f"{split}.tsv", corpus_ids, query_ids)
              for split in SPLITS if (root / QRELS / f"{split}.tsv").is_file()}
    if "test" not in splits and "dev" not in splits:
        raise TunerError(f"{root}: no {QRELS}/test.tsv or {QRELS}/dev.tsv; add the relevance judgements "
                         "(query-id<TAB>corpus-id<TAB>score)")
    return Dataset(name=name or root.resolve().name, task="retrieval", splits=splits, source=str(root),
                   score_range=None, corpus=corpus, queries=queries)


def sample_queries(qrels: pd.DataFrame, n: Optional[int], seed: int) -> pd.DataFrame:
    """The judgements of at most ``n`` seeded random queries (``max_eval_examples`` of a retrieval set).

    Whole queries, never single rows: dropping one relevant document of a query would count it as
    irrelevant and lower every metric. The corpus stays whole (it is what is searched)."""
    if n is None:
        return qrels
    ids = pd.Series(qrels["query_id"].unique())
    if int(n) >= len(ids):
        return qrels
    keep = set(ids.sample(n=int(n), random_state=seed))
    return qrels[qrels["query_id"].isin(keep)].reset_index(drop=True)
