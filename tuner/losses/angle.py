"""AnglE loss (Li & Li 2023, "AnglE-optimized Text Embeddings", arXiv 2309.12871).

Each embedding is read as a complex vector ``z = x_re + i*x_im`` (first and
second half of the dimensions). The angle similarity of a pair is the real plus
imaginary part of the normalised quotient ``z_a / z_b`` summed over dimensions,
i.e. after L2 normalisation of ``a`` and ``b``:

    s_k = | sum(a_re*b_re + a_im*b_im) + sum(a_im*b_re - a_re*b_im) |
        = | cos(a_k, b_k) + sin-term(a_k, b_k) |

and the loss is the CoSENT ranking objective on it:

    L = log(1 + sum_{(i, j): y_i > y_j} exp(tau * (s_j - s_i)))

This equals sentence-transformers' ``AnglELoss(scale=tau)`` (CoSENT with
``util.pairwise_angle_sim``) and AnglE's ``angle_loss`` with its default
"sum" pooling. Odd dimensions are zero-padded, as sentence-transformers does.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from tuner.losses.cosent import ranking_loss
from tuner.losses.registry import default_tau


def pairwise_angle_sim(a: Tensor, b: Tensor) -> Tensor:
    """AnglE similarity ``|cos + sin|`` of each row pair, ``[N]``.

    Normalising with an epsilon (instead of dividing by the raw squared norm,
    as the original does) keeps zero vectors finite.
    """
    if a.shape[-1] % 2:
        a, b = F.pad(a, (0, 1)), F.pad(b, (0, 1))
    a, b = F.normalize(a, dim=-1, eps=1e-8), F.normalize(b, dim=-1, eps=1e-8)
    a_re, a_im = a.chunk(2, dim=-1)
    b_re, b_im = b.chunk(2, dim=-1)
    real = (a_re * b_re + a_im * b_im).sum(-1)
    imag = (a_im * b_re - a_re * b_im).sum(-1)
    return (real + imag).abs()


def angle_loss(a: Tensor, b: Tensor, labels: Tensor, tau: Optional[float] = None) -> Tensor:
    """AnglE loss over a batch of pairs.

    Args:
        a: first sentence of each pair, ``[N, d]``.
        b: second sentence of each pair, ``[N, d]``.
        labels: similarity scores normalised to 0..1, ``[N]``.
        tau: scale on the angle similarity; None: the registry's default for ``angle`` (AnglE's own;
            sentence-transformers' ``AnglELoss`` uses another).

    Returns:
        A scalar tensor, computed in float32 (or float64 if the inputs are).
    """
    tau = default_tau("angle") if tau is None else tau
    dtype = torch.promote_types(a.dtype, torch.float32)
    sim = pairwise_angle_sim(a.to(dtype), b.to(dtype))
    return ranking_loss(tau * sim, labels.to(dtype))
