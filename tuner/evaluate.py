"""Encoding and the evaluation protocols.

- STS: Spearman (and Pearson) correlation between the cosine similarity of the two sentence
  embeddings and the gold score.
- Classification, on frozen embeddings:
  * ``seed``: the original project's protocol: ``LogisticRegression(max_iter=10000)`` fit on the
    train split, accuracy on the test split.
  * ``senteval``: SentEval's protocol: 10-fold stratified cross-validation over the whole set,
    the L2 strength C chosen in each fold by an inner stratified 5-fold CV over
    ``C in 2**[-2..4]`` (Conneau & Kiela 2018).
Every classification result names its protocol.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import pearsonr, spearmanr

from tuner.errors import TunerError
from tuner.models import Encoder
from tuner.tokenize import pad_batch, pad_id_of, tokenize

CLASSIFICATION_PROTOCOLS = ("seed", "senteval")
SENTEVAL_CS = [2.0**t for t in range(-2, 5)]


@torch.inference_mode()
def encode(encoder: Encoder, texts: Sequence[str], batch_size: int = 64, max_seq_length: int = 128,
           precision: str = "fp32") -> np.ndarray:
    """Embed ``texts`` -> float32 array [n, d], in the input order.

    Batches are formed over texts sorted by token length (longest first), so each is padded to
    its own longest sentence; results are put back in input order.
    """
    if len(texts) == 0:
        return np.zeros((0, int(encoder.model.config.hidden_size)), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    ids = tokenize(encoder.tokenizer, texts, max_seq_length)
    order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    device = encoder.device
    pad_id = pad_id_of(encoder.tokenizer)
    side = getattr(encoder.tokenizer, "padding_side", "right")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if device.type == "cuda" else None
    out = None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in rows], pad_id, side)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            emb = encoder(input_ids.to(device), mask.to(device))
        emb = emb.float().cpu().numpy()
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[rows] = emb
    if was_training:
        encoder.train()
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [n, d] arrays (zero vectors give 0)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(a)), where=norms > 0)


def sts_correlations(similarities: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson between predicted similarities and gold scores."""
    if len(gold) < 2 or np.all(gold == gold[0]):
        raise TunerError("STS evaluation needs at least 2 rows with different gold scores")
    return {"spearman": float(spearmanr(similarities, gold).statistic),
            "pearson": float(pearsonr(similarities, gold).statistic)}


def evaluate_sts(encoder: Encoder, df: pd.DataFrame, batch_size: int = 64, max_seq_length: int = 128) -> dict[str, float]:
    """Spearman/Pearson of cosine similarity on an STS frame (sentence1, sentence2, score)."""
    s1 = df["sentence1"].astype(str).tolist()
    s2 = df["sentence2"].astype(str).tolist()
    # Encode the union once: STS sets repeat sentences across pairs.
    unique = list(dict.fromkeys(s1 + s2))
    emb = encode(encoder, unique, batch_size, max_seq_length)
    index = {t: i for i, t in enumerate(unique)}
    sims = cosine_rows(emb[[index[t] for t in s1]], emb[[index[t] for t in s2]])
    return {**sts_correlations(sims, df["score"].to_numpy(dtype=np.float64)), "n": len(df)}


def logistic_regression_seed(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                             seed: int = 42) -> float:
    """The original project's protocol: LogisticRegression(max_iter=10000), accuracy on test."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=10000, random_state=seed)
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def logistic_regression_senteval(x: np.ndarray, y: np.ndarray, seed: int = 1111, folds: int = 10,
                                 inner_folds: int = 5) -> float:
    """SentEval's protocol: outer stratified k-fold; in each fold C is chosen by inner CV; mean accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = []
    for train_idx, test_idx in outer.split(x, y):
        inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
        search = GridSearchCV(LogisticRegression(max_iter=2000, random_state=seed), {"C": SENTEVAL_CS},
                              cv=inner, scoring="accuracy", refit=True, n_jobs=1)
        search.fit(x[train_idx], y[train_idx])
        scores.append(search.score(x[test_idx], y[test_idx]))
    return float(np.mean(scores))


def evaluate_classification(encoder: Encoder, test: pd.DataFrame, train: "pd.DataFrame | None" = None,
                            protocol: str = "senteval", batch_size: int = 64, max_seq_length: int = 128,
                            seed: int = 42) -> dict[str, float]:
    """Accuracy of logistic regression on frozen embeddings under ``protocol``."""
    if protocol not in CLASSIFICATION_PROTOCOLS:
        raise TunerError(f"unknown classification protocol '{protocol}'; use one of {', '.join(CLASSIFICATION_PROTOCOLS)}")
    if protocol == "seed":
        if train is None:
            raise TunerError("the 'seed' classification protocol needs a train split to fit the classifier")
        texts = train["sentence"].astype(str).tolist() + test["sentence"].astype(str).tolist()
        emb = encode(encoder, texts, batch_size, max_seq_length)
        acc = logistic_regression_seed(emb[:len(train)], train["label"].to_numpy(), emb[len(train):],
                                       test["label"].to_numpy(), seed=seed)
        return {"accuracy": acc, "n": len(test)}
    emb = encode(encoder, test["sentence"].astype(str).tolist(), batch_size, max_seq_length)
    return {"accuracy": logistic_regression_senteval(emb, test["label"].to_numpy()), "n": len(test)}


def evaluate_classification_splits(encoder: Encoder, frames: "dict[str, pd.DataFrame]", train: pd.DataFrame,
                                   batch_size: int = 64, max_seq_length: int = 128,
                                   seed: int = 42) -> dict[str, dict[str, float]]:
    """The ``seed`` protocol on several splits (e.g. dev and test) that share one train split.

    Same result as ``evaluate_classification(encoder, frame, train, protocol="seed")`` per frame,
    but the train split is encoded once instead of once per frame (it is usually the largest
    part: MR's standard train split is 6.7k of its 10.7k sentences). Returns ``{name: result}``.
    """
    train_texts = train["sentence"].astype(str).tolist()
    names = list(frames)
    texts = list(train_texts)
    bounds = []
    for name in names:
        part = frames[name]["sentence"].astype(str).tolist()
        bounds.append((len(texts), len(texts) + len(part)))
        texts.extend(part)
    emb = encode(encoder, texts, batch_size, max_seq_length)
    train_x, train_y = emb[:len(train_texts)], train["label"].to_numpy()
    out = {}
    for name, (lo, hi) in zip(names, bounds):
        frame = frames[name]
        out[name] = {"accuracy": logistic_regression_seed(train_x, train_y, emb[lo:hi], frame["label"].to_numpy(),
                                                          seed=seed), "n": len(frame)}
    return out
