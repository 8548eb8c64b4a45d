"""Cosine-MSE loss: regress the cosine similarity of each pair onto its label.

    L = 1/N * sum_i (cos(a_i, b_i) - y_i)^2

This is sentence-transformers' ``CosineSimilarityLoss`` with its default
``nn.MSELoss()`` (Reimers & Gurevych 2019, "Sentence-BERT"). Labels are the
normalised 0..1 scores; cosine lives in [-1, 1], so a perfect model maps
unrelated pairs to 0, not to -1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_mse_loss(a: Tensor, b: Tensor, labels: Tensor) -> Tensor:
    """Mean squared error between ``cos(a_i, b_i)`` and ``labels[i]``.

    Args:
        a: first sentence of each pair, ``[N, d]``.
        b: second sentence of each pair, ``[N, d]``.
        labels: similarity scores normalised to 0..1, ``[N]``.

    Returns:
        A scalar tensor, computed in float32 (or float64 if the inputs are).
    """
    dtype = torch.promote_types(a.dtype, torch.float32)
    cos = F.cosine_similarity(a.to(dtype), b.to(dtype), dim=-1, eps=1e-8)
    return F.mse_loss(cos, labels.to(dtype).view(-1))
