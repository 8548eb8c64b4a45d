"""CoSENT loss (Su 2022, "CoSENT: A more efficient sentence vector scheme than Sentence-BERT").

For every ordered pair of pairs whose labels say ``y_i > y_j``, pair ``i`` should
score higher than pair ``j``:

    L = log(1 + sum_{(i, j): y_i > y_j} exp(tau * (s_j - s_i))),   s_k = cos(a_k, b_k)

Only the *order* of the labels matters, so normalised and raw labels give the
same loss. This equals sentence-transformers' ``CoSENTLoss(scale=tau)``.
``ranking_loss`` is the shared core, also used by the AnglE loss with another
similarity.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from tuner.losses.registry import default_tau


def ranking_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """``log(1 + sum_{y_i > y_j} exp(scores_j - scores_i))`` over all ordered pairs.

    Computed as ``logsumexp([0, ...differences...])`` so large scales do not
    overflow. With no ordered pair (constant labels, a single pair) it returns
    ``log(1) = 0``, still attached to the graph.

    Args:
        scores: already-scaled similarity per pair, ``[N]``.
        labels: target score per pair, ``[N]`` (any monotone scale).
    """
    labels = labels.view(-1).to(scores.device)
    # diff[i, j] = scores[j] - scores[i], kept where labels[i] > labels[j]
    diff = scores[None, :] - scores[:, None]
    ordered = labels[:, None] > labels[None, :]
    terms = torch.cat((scores.new_zeros(1), diff[ordered]))
    return torch.logsumexp(terms, dim=0)


def cosent_loss(a: Tensor, b: Tensor, labels: Tensor, tau: Optional[float] = None) -> Tensor:
    """CoSENT loss over a batch of pairs.

    Args:
        a: first sentence of each pair, ``[N, d]``.
        b: second sentence of each pair, ``[N, d]``.
        labels: similarity scores normalised to 0..1, ``[N]``.
        tau: scale applied to the cosine similarities (sentence-transformers'
            ``scale``); None: the registry's default for ``cosent``.

    Returns:
        A scalar tensor, computed in float32 (or float64 if the inputs are).
    """
    tau = default_tau("cosent") if tau is None else tau
    dtype = torch.promote_types(a.dtype, torch.float32)
    cos = F.cosine_similarity(a.to(dtype), b.to(dtype), dim=-1, eps=1e-8)
    return ranking_loss(tau * cos, labels.to(dtype))
