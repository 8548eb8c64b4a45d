"""Hard-negative mining: (anchor, positive) pairs -> triplets, with a model's own similarities (issue #24).

What the options mean is :mod:`tuner.data.mining`'s (sentence-transformers' ``mine_hard_negatives``
options). How it runs:

* The corpus is every distinct positive of the pairs plus the extra ``corpus`` texts; anchors and
  corpus are encoded once each (unique texts) and compared by cosine.
* Exact search in batches of anchors: one ``[batch, corpus]`` block of similarities at a time, the
  anchor's own positives (and any text equal to one of them or to the anchor) set to -inf, then the
  top ``range_max`` by ``argpartition``, ordered by similarity then corpus position. Memory is
  O(batch x corpus), never corpus x corpus.
* The result is aligned with the input rows: ``anchor, positive, negative, negative_2, ...`` (tuner's
  triplet columns, :mod:`tuner.data.shapes`), None where an anchor got fewer negatives than asked,
  plus ``score_positive``, ``score_negative``, ... (the cosines). Rows of one anchor share its negatives.

**Deterministic and cached.** The same model, pairs, corpus and settings give the same triplets: the
search has a fixed order and ``random`` sampling draws from :data:`~tuner.data.mining.MINING_SEED`.
The result is kept under ``<cache>/mined/<key>.parquet`` (``$TUNER_CACHE``, else ``~/.cache/tuner``),
the key being a hash of the model's identity (source, its files' stamps, a sample of every weight,
pooling, prompt, max_seq_length), the pairs' and corpus texts and every setting. It is written under a
file lock, to a temporary file renamed into place, so two workers of a study that ask for the same
setting at once mine it once: the second waits and reads what the first wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from tuner.config import RunConfig
from tuner.data import check_min_rows, subsample
from tuner.data.mining import MiningSettings
from tuner.data.shapes import ANCHOR, NEGATIVE, POSITIVE, TRIPLETS
from tuner.engine._prepare import PreparedData, shaped_train_data
from tuner.errors import TunerError
from tuner.evaluation import encode
from tuner.models import Encoder
from tuner.models._bundled import cache_root
from tuner.models._cache import cache_key

CACHE_VERSION = 1  # bump when the mined output of the same inputs changes
SEARCH_BATCH = 256  # anchors per block of similarities


@dataclass
class Mined:
    """Mined triplets aligned with the input pairs (module doc), their summary, and where they are cached."""

    frame: pd.DataFrame
    settings: MiningSettings
    stats: dict[str, Any]
    key: str
    cache_file: Optional[Path] = None
    from_cache: bool = False
    negatives: list[str] = field(default_factory=list)  # the negative columns, in order

    def triplets(self, scores: bool = False) -> pd.DataFrame:
        """The rows that got at least one negative: ``anchor, positive, negative[, negative_2 ...]`` (+ scores)."""
        keep = self.frame[NEGATIVE].notna()
        columns = [ANCHOR, POSITIVE, *self.negatives]
        if scores:
            columns += [c for c in self.frame.columns if c.startswith("score_")]
        return self.frame.loc[keep, columns].reset_index(drop=True)


def negative_names(n: int) -> list[str]:
    """``negative, negative_2, ..., negative_n``."""
    return [NEGATIVE] + [f"{NEGATIVE}_{i}" for i in range(2, n + 1)]


def model_identity(encoder: Encoder, max_seq_length: int) -> dict[str, Any]:
    """What makes two encoders embed alike: source (and its files' stamps), a hash of the first values of
    every weight (an encoder fine-tuned in memory differs), pooling, prompt, max_seq_length."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().reshape(-1)[:64].float().cpu().numpy().tobytes())
    return {"source": repr(cache_key(str(encoder.source))), "weights": digest.hexdigest(),
            "pooling": str(encoder.pooling), "prompt": encoder.prompt, "max_seq_length": int(max_seq_length)}


def texts_hash(*columns: Sequence[str]) -> str:
    """sha256 of the texts, column by column, in order."""
    digest = hashlib.sha256()
    for column in columns:
        digest.update(b"\x02")
        for text in column:
            digest.update(text.encode("utf-8") + b"\x01")
    return digest.hexdigest()


def cache_folder(cache_dir: "str | os.PathLike | None" = None) -> Path:
    """``cache_dir``, else ``$TUNER_CACHE/mined`` (``~/.cache/tuner/mined``)."""
    return Path(cache_dir) if cache_dir is not None else cache_root() / "mined"


def mine_hard_negatives(encoder: Encoder, pairs: pd.DataFrame, settings: MiningSettings, *,
                        corpus: Optional[Sequence[str]] = None, batch_size: int = 64, max_seq_length: int = 128,
                        cache_dir: "str | os.PathLike | None" = None, cache: bool = True) -> Mined:
    """Mine ``settings.num_negatives`` hard negatives for every (anchor, positive) row of ``pairs``
    (columns ``anchor``, ``positive``), reading and writing the cache unless ``cache`` is False."""
    settings = settings.resolved()
    if len(pairs) == 0:
        raise TunerError("no (anchor, positive) pairs to mine from; give a file with rows")
    anchors, positives = pairs[ANCHOR].astype(str).tolist(), pairs[POSITIVE].astype(str).tolist()
    extra = [str(t) for t in corpus or ()]
    key = hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "model": model_identity(encoder, max_seq_length),
        "pairs": texts_hash(anchors, positives), "corpus": texts_hash(extra), "settings": settings.to_dict(),
    }, sort_keys=True).encode()).hexdigest()[:32]
    corpus_size = len(set(positives) | set(extra))
    if not cache:
        frame = _mine(encoder, anchors, positives, extra, settings, batch_size, max_seq_length)
        return _result(frame, settings, key, None, False, corpus_size)
    folder = cache_folder(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunerError(f"cannot create the mining cache {folder}: {exc.strerror or exc}; set $TUNER_CACHE to a "
                         "writable folder or pass --no-cache") from None
    from filelock import FileLock

    target = folder / f"{key}.parquet"
    with FileLock(str(folder / f".{key}.lock"), timeout=3600):
        if target.is_file():
            return _result(pd.read_parquet(target), settings, key, target, True, corpus_size)
        frame = _mine(encoder, anchors, positives, extra, settings, batch_size, max_seq_length)
        write_table(frame, target)
    return _result(frame, settings, key, target, False, corpus_size)


def _result(frame: pd.DataFrame, settings: MiningSettings, key: str, path: Optional[Path], hit: bool,
            corpus_size: int) -> Mined:
    names = negative_names(settings.num_negatives)
    return Mined(frame, settings, {**mining_stats(frame, names), "corpus": corpus_size}, key, path, hit, names)




def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _mine(encoder: Encoder, anchors: list[str], positives: list[str], extra: list[str], settings: MiningSettings,
          batch_size: int, max_seq_length: int) -> pd.DataFrame:
    """Encode, search and select (module doc); the aligned frame."""
    texts = list(dict.fromkeys(positives + extra))  # the corpus: distinct texts, first occurrence first
    where = {t: i for i, t in enumerate(texts)}
    queries = list(dict.fromkeys(anchors))
    query_of = {t: i for i, t in enumerate(queries)}
    q = _unit(encode(encoder, queries, batch_size, max_seq_length))
    c = _unit(encode(encoder, texts, batch_size, max_seq_length))
    own: list[set[int]] = [set() for _ in queries]
    for a, p in zip(anchors, positives):
        own[query_of[a]].add(where[p])
    row_scores = np.einsum("ij,ij->i", q[[query_of[a] for a in anchors]], c[[where[p] for p in positives]])
    least = np.full(len(queries), np.inf)
    np.minimum.at(least, [query_of[a] for a in anchors], row_scores)  # the least similar positive of each anchor
    excluded = [sorted(own[i] | ({where[t]} if (t := queries[i]) in where else set())) for i in range(len(queries))]
    picked, picked_scores = search(q, c, excluded, least, settings)
    n = settings.num_negatives
    rows = [query_of[a] for a in anchors]
    data: dict[str, Any] = {ANCHOR: anchors, POSITIVE: positives}
    names = negative_names(n)
    for j, name in enumerate(names):
        data[name] = [texts[picked[r, j]] if picked[r, j] >= 0 else None for r in rows]
    data["score_positive"] = row_scores.astype(np.float64)
    for j, name in enumerate(names):
        data[f"score_{name}"] = [float(picked_scores[r, j]) if picked[r, j] >= 0 else np.nan for r in rows]
    return pd.DataFrame(data)


def search(q: np.ndarray, c: np.ndarray, excluded: list[list[int]], least_positive: np.ndarray,
           settings: MiningSettings) -> tuple[np.ndarray, np.ndarray]:
    """For unit vectors ``q`` [A, d] and ``c`` [C, d]: each anchor's negatives as corpus indices [A, n] (-1 where
    fewer) and their cosines, by the rank window, the score filters and the sampling of ``settings``."""
    s = settings.resolved()
    n, k = s.num_negatives, min(s.range_max, c.shape[0])
    out = np.full((q.shape[0], n), -1, dtype=np.int64)
    out_scores = np.full((q.shape[0], n), np.nan)
    rng = np.random.default_rng(s.seed)
    for start in range(0, q.shape[0], SEARCH_BATCH):
        sims = q[start:start + SEARCH_BATCH] @ c.T  # [batch, corpus]
        for r, skip in enumerate(excluded[start:start + SEARCH_BATCH]):
            sims[r, skip] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < c.shape[0] else np.tile(np.arange(c.shape[0]),
                                                                                          (len(sims), 1))
        for r in range(len(sims)):
            cand = top[r][np.lexsort((top[r], -sims[r, top[r]]))][s.range_min:]  # by similarity, then position
            score = sims[r, cand]
            keep = np.isfinite(score) & _passes(score, least_positive[start + r], s)
            cand, score = cand[keep], score[keep]
            if s.sampling == "random" and len(cand) > n:
                chosen = np.sort(rng.choice(len(cand), n, replace=False))
                cand, score = cand[chosen], score[chosen]
            out[start + r, :min(n, len(cand))] = cand[:n]
            out_scores[start + r, :min(n, len(cand))] = score[:n]
    return out, out_scores


def _passes(score: np.ndarray, positive: float, s: MiningSettings) -> np.ndarray:
    """The score filters: margin and relative margin below the (least similar) positive, max and min score."""
    ok = np.ones(len(score), dtype=bool)
    if s.margin is not None:
        ok &= score + s.margin <= positive
    if s.relative_margin is not None:
        ok &= score <= positive - abs(positive) * s.relative_margin
    if s.max_score is not None:
        ok &= score <= s.max_score
    if s.min_score is not None:
        ok &= score >= s.min_score
    return ok


def mining_stats(frame: pd.DataFrame, negatives: list[str]) -> dict[str, Any]:
    """Counts and the cosine summary of the negatives against the positives (per row)."""
    found = frame[negatives].notna().sum(axis=1).to_numpy()
    neg = np.concatenate([frame[f"score_{c}"].to_numpy(dtype=np.float64) for c in negatives])
    neg = neg[np.isfinite(neg)]
    pos = frame["score_positive"].to_numpy(dtype=np.float64)
    first = frame[f"score_{negatives[0]}"].to_numpy(dtype=np.float64)
    gap = (pos - first)[np.isfinite(first)]

    def summary(x: np.ndarray) -> dict[str, Optional[float]]:
        if len(x) == 0:
            return {"mean": None, "median": None, "min": None, "max": None}
        return {"mean": float(np.mean(x)), "median": float(np.median(x)), "min": float(np.min(x)),
                "max": float(np.max(x))}

    return {"pairs": int(len(frame)), "anchors": int(frame[ANCHOR].nunique()),
            "negatives_asked": len(negatives), "negatives_mined": int(found.sum()),
            "pairs_with_fewer": int((found < len(negatives)).sum()), "pairs_without": int((found == 0).sum()),
            "triplet_rows": int((found > 0).sum()), "positive_similarity": summary(pos),
            "negative_similarity": summary(neg), "positive_minus_first_negative": summary(gap)}


def mine_for_run(data: PreparedData, encoder: Encoder, config: RunConfig) -> tuple[PreparedData, Mined]:
    """The run's training data with mined negatives: every pair of the file mined once per setting (the
    cache keeps it for the other trials and seeds), then the run's own ``max_train_examples`` subsample
    of the rows (the rows the run would train on unmined), the rows that got no negative dropped.
    ``encoder`` is the base model, before any fine-tuning."""
    settings = config.mining
    if settings is None or data.mine_from is None:
        raise TunerError("this run mines no negatives (mine_num_negatives is 0, or its data is not unscored pairs)")
    mined = mine_hard_negatives(encoder, data.mine_from, settings, max_seq_length=config.max_seq_length)
    frame = subsample(mined.frame, config.max_train_examples, config.seed)
    frame = frame[frame[NEGATIVE].notna()].reset_index(drop=True)
    where = f"{data.where} with {settings.num_negatives} mined negative(s)"
    if len(frame) == 0:
        raise TunerError(f"{where}: no pair got a negative; widen mine_range_max or loosen the margin / score bounds")
    check_min_rows(frame, config.batch_size, where)
    train = shaped_train_data(frame[[ANCHOR, POSITIVE, *mined.negatives]], TRIPLETS, where)
    return replace(data, train=train), mined


OUTPUT_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl")


def check_output(out: "str | os.PathLike") -> Path:
    """``out``'s suffix names a format tuner reads back, and its folder exists (checked before any model loads)."""
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise TunerError(f"--out {out}: unsupported file type '{path.suffix or '(none)'}'; use "
                         f"{', '.join(OUTPUT_SUFFIXES)}")
    if not path.parent.resolve().is_dir():
        raise TunerError(f"--out {out}: the folder {path.parent} does not exist; create it first")
    return path


def load_pairs(train: Any, columns: Optional[dict[str, str]] = None, data_dir: Any = None) -> tuple[pd.DataFrame, str]:
    """The (anchor, positive) rows of a pairs file or DataFrame (its train split, else all of it) and its name."""
    from tuner.data import Dataset, load_dataset

    ds = train if isinstance(train, Dataset) else load_dataset(train, data_dir=data_dir, columns=columns)
    if ds.task != "pairs":
        what = "already holds negatives" if ds.task == "triplets" else f"is {ds.task} data"
        raise TunerError(f"{ds.name} {what}; mining reads unscored (anchor, positive) pairs (name yours with "
                         "--columns anchor=COLUMN,positive=COLUMN)")
    return ds.splits.get("train", ds.splits.get("all")), ds.name


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """``frame`` to ``out`` in its suffix's format, through a temporary file renamed into place."""
    handle, tmp = tempfile.mkstemp(prefix=f".tmp-{out.stem}-", suffix=out.suffix, dir=out.parent)
    os.close(handle)
    suffix = out.suffix.lower()
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
        os.replace(tmp, out)
    except OSError as exc:
        raise TunerError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
