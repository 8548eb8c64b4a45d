"""Retrieval: rank a corpus for each query by cosine similarity, score the ranking against the qrels.

Exact search, in two bounded loops: the corpus is encoded ``corpus_chunk`` documents at a time and
each chunk is scored against ``query_chunk`` queries at a time, keeping a running top ``k`` per query
(``k`` = the largest cut-off, 100). Memory is ``corpus_chunk x (queries + dim)`` floats, never
``corpus x queries``: a million-document corpus is scored in 20 chunks of 50,000.

Metrics (binary relevance: a qrels score > 0 is relevant), each the mean over the queries that have
at least one relevant document in the split, as sentence-transformers' ``InformationRetrievalEvaluator``
computes them (ranking ties broken by corpus id):

* ``ndcg@10``: DCG of the top 10 (gain 1 / log2(rank + 1)) over the ideal DCG of min(relevant, 10);
* ``mrr@10``: 1 / rank of the first relevant document in the top 10, else 0;
* ``recall@10``, ``recall@100``: relevant documents in the top k / relevant documents;
* ``map@100``: the precisions at each relevant rank in the top 100, summed, over min(relevant, 100).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from tuner.evaluation._encode import encode
from tuner.models import Encoder

RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100")
MAIN_METRIC = "ndcg@10"
TOP_K = 100


def _cutoff(metric: str) -> int:
    return int(metric.split("@")[1])


def query_metrics(ranked: Sequence[str], relevant: "set[str]") -> dict[str, float]:
    """The metrics of one query: ``ranked`` corpus ids (best first), ``relevant`` ids (non-empty)."""
    hits = [doc in relevant for doc in ranked]
    out: dict[str, float] = {}
    for metric in RETRIEVAL_METRICS:
        kind, k = metric.split("@")[0], _cutoff(metric)
        top = hits[:k]
        if kind == "ndcg":
            dcg = sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(top) if hit)
            ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
            out[metric] = dcg / ideal
        elif kind == "mrr":
            out[metric] = next((1.0 / (rank + 1) for rank, hit in enumerate(top) if hit), 0.0)
        elif kind == "recall":
            out[metric] = sum(top) / len(relevant)
        else:  # map
            found, total = 0, 0.0
            for rank, hit in enumerate(top):
                if hit:
                    found += 1
                    total += found / (rank + 1)
            out[metric] = total / min(k, len(relevant))
    return out


def exact_search(encoder: Encoder, corpus: pd.DataFrame, query_embeddings: np.ndarray, *, top_k: int = TOP_K,
                 batch_size: int = 64, max_seq_length: int = 128, corpus_chunk: int = 50_000,
                 query_chunk: int = 1_024) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` documents of every query: (scores [q, k] float32, corpus row indices [q, k]),
    best first. ``query_embeddings`` are L2-normalised; the corpus is encoded chunk by chunk."""
    n_queries = len(query_embeddings)
    k = min(top_k, len(corpus))
    best_scores = torch.full((n_queries, 0), -math.inf)
    best_index = torch.zeros((n_queries, 0), dtype=torch.long)
    queries = torch.from_numpy(query_embeddings)
    texts = corpus["text"].tolist()
    for start in range(0, len(texts), corpus_chunk):
        docs = torch.from_numpy(encode(encoder, texts[start:start + corpus_chunk], batch_size, max_seq_length))
        docs = torch.nn.functional.normalize(docs, dim=1)
        chunk_scores, chunk_index = [], []
        for q0 in range(0, n_queries, query_chunk):
            sims = queries[q0:q0 + query_chunk] @ docs.T
            s, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
            chunk_scores.append(s)
            chunk_index.append(i + start)
        merged_scores = torch.cat([best_scores, torch.cat(chunk_scores)], dim=1)
        merged_index = torch.cat([best_index, torch.cat(chunk_index)], dim=1)
        keep = torch.topk(merged_scores, min(k, merged_scores.shape[1]), dim=1).indices
        best_scores = torch.gather(merged_scores, 1, keep)
        best_index = torch.gather(merged_index, 1, keep)
    return best_scores.numpy(), best_index.numpy()


def evaluate_retrieval(encoder: Encoder, corpus: pd.DataFrame, queries: pd.DataFrame, qrels: pd.DataFrame, *,
                       batch_size: int = 64, max_seq_length: int = 128, corpus_chunk: int = 50_000,
                       return_items: bool = False) -> dict[str, Any]:
    """Retrieval metrics of ``encoder`` (see the module doc) for the queries of ``qrels``.

    ``corpus``/``queries``: frames of ``id, text``; ``qrels``: ``query_id, corpus_id`` of the relevant
    pairs (a :class:`~tuner.data.registry.Dataset` split of a BEIR folder). Returns the metric means,
    ``n`` (queries scored) and ``corpus`` (its size); with ``return_items``, ``"per_query"``: each
    query's ``ndcg@10`` in the order of ``"query_ids"``."""
    relevant: dict[str, set[str]] = {}
    for query, doc in zip(qrels["query_id"], qrels["corpus_id"]):
        relevant.setdefault(str(query), set()).add(str(doc))
    text_of = dict(zip(queries["id"].astype(str), queries["text"]))
    query_ids = [q for q in queries["id"].astype(str) if q in relevant]
    embeddings = encode(encoder, [text_of[q] for q in query_ids], batch_size, max_seq_length)
    embeddings = torch.nn.functional.normalize(torch.from_numpy(embeddings), dim=1).numpy()
    scores, index = exact_search(encoder, corpus, embeddings, batch_size=batch_size, max_seq_length=max_seq_length,
                                 corpus_chunk=corpus_chunk)
    doc_ids = corpus["id"].astype(str).to_numpy()
    per_query = []
    for row, query in enumerate(query_ids):
        ranked = sorted(zip(-scores[row], doc_ids[index[row]]))  # ties by ascending corpus id
        per_query.append(query_metrics([doc for _, doc in ranked], relevant[query]))
    out: dict[str, Any] = {m: float(np.mean([q[m] for q in per_query])) for m in RETRIEVAL_METRICS}
    out.update(n=len(query_ids), corpus=len(corpus))
    if return_items:
        out["query_ids"] = query_ids
        out["per_query"] = np.array([q[MAIN_METRIC] for q in per_query], dtype=np.float64)
    return out
