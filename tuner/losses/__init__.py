"""Pair losses for fine-tuning sentence embeddings, one per module.

Each loss takes the two halves of a batch of pairs, ``a`` and ``b`` (``[N, d]``),
and labels ``[N]`` already normalised to 0..1 by the caller, and returns a
float32 scalar:

* ``cosine_mse_loss`` -- "cos_mse", sentence-transformers' CosineSimilarityLoss.
* ``cosent_loss``     -- "cosent", Su 2022.
* ``in_batch_negatives_loss`` -- "ibn", AnglE / SimCSE contrastive loss.
* ``angle_loss``      -- "angle", Li & Li 2023 (arXiv 2309.12871).

``tuner.losses.registry`` is the one list of losses (names, titles, aliases, default
temperatures, plot styles, functions). ``CombinedLoss`` weights them and works on the zigzag layout ``[a0, b0, a1, b1, ...]``.
"""
from tuner.losses.angle import angle_loss, pairwise_angle_sim
from tuner.losses.combined import CombinedLoss
from tuner.losses.cosent import cosent_loss, ranking_loss
from tuner.losses.cosine_mse import cosine_mse_loss
from tuner.losses.registry import LOSSES, LossSpec, register_loss
from tuner.losses.in_batch_negatives import (
    ANGLE_INT_CAST_THRESHOLD,
    DEFAULT_POSITIVE_THRESHOLD,
    POSITIVE_RULES,
    in_batch_negatives_loss,
    positive_mask,
)

__all__ = [
    "ANGLE_INT_CAST_THRESHOLD",
    "DEFAULT_POSITIVE_THRESHOLD",
    "POSITIVE_RULES",
    "CombinedLoss",
    "angle_loss",
    "cosent_loss",
    "cosine_mse_loss",
    "in_batch_negatives_loss",
    "LOSSES",
    "LossSpec",
    "register_loss",
    "pairwise_angle_sim",
    "positive_mask",
    "ranking_loss",
]
