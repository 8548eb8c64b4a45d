"""STS: Spearman (and Pearson) correlation between the cosine similarity of the two sentence
embeddings and the gold score."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

from tuner.errors import TunerError
from tuner.evaluation._encode import encode
from tuner.models import Encoder


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


def evaluate_sts(encoder: Encoder, df: pd.DataFrame, batch_size: int = 64, max_seq_length: int = 128, *,
                 return_items: bool = False) -> dict[str, float]:
    """Spearman/Pearson of cosine similarity on an STS frame (sentence1, sentence2, score).

    ``return_items`` adds ``"similarities"``: each pair's cosine similarity, in row order (for a
    paired bootstrap over test pairs)."""
    s1 = df["sentence1"].astype(str).tolist()
    s2 = df["sentence2"].astype(str).tolist()
    # Encode the union once: STS sets repeat sentences across pairs.
    unique = list(dict.fromkeys(s1 + s2))
    emb = encode(encoder, unique, batch_size, max_seq_length)
    index = {t: i for i, t in enumerate(unique)}
    sims = cosine_rows(emb[[index[t] for t in s1]], emb[[index[t] for t in s2]])
    out = {**sts_correlations(sims, df["score"].to_numpy(dtype=np.float64)), "n": len(df)}
    if return_items:
        out["similarities"] = np.asarray(sims, dtype=np.float64)
    return out
