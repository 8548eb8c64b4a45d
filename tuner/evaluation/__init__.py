"""Scoring embeddings: encoding, STS correlations, SentEval classification on frozen embeddings.

One module per evaluation (as sentence-transformers' ``evaluation/``)::

    _encode.py          sentences -> embeddings, batched by token length
    _sts.py             Spearman/Pearson of cosine similarity vs gold scores
    _classification.py  logistic regression on frozen embeddings (seed and SentEval protocols)
    _retrieval.py       exact search over a corpus: NDCG@10, MRR@10, Recall@10/100, MAP@100
"""
from tuner.evaluation._classification import (CLASSIFICATION_PROTOCOLS, SENTEVAL_CS, SENTEVAL_SEED,
                                              evaluate_classification, evaluate_classification_splits,
                                              logistic_regression_seed, logistic_regression_senteval,
                                              senteval_cv, senteval_order)
from tuner.evaluation._encode import encode
from tuner.evaluation._retrieval import RETRIEVAL_METRICS, evaluate_retrieval, exact_search, query_metrics
from tuner.evaluation._sts import cosine_rows, evaluate_sts, sts_correlations

__all__ = [
    "CLASSIFICATION_PROTOCOLS", "RETRIEVAL_METRICS", "SENTEVAL_CS", "SENTEVAL_SEED", "cosine_rows", "encode", "evaluate_classification",
    "evaluate_classification_splits", "evaluate_retrieval", "evaluate_sts", "exact_search", "query_metrics", "logistic_regression_seed", "logistic_regression_senteval",
    "senteval_cv", "senteval_order", "sts_correlations",
]
