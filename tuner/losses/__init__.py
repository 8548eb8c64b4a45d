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
import importlib
from typing import Any

from tuner.losses.registry import LOSSES, LossSpec, register_loss

# Torch is imported when a loss function is first used, not by ``import tuner.losses.registry``
# (the study parser, RunConfig and the exporter need the registry, never torch).
_LAZY = {
    "angle_loss": "angle", "pairwise_angle_sim": "angle", "CombinedLoss": "combined",
    "cosent_loss": "cosent", "ranking_loss": "cosent", "cosine_mse_loss": "cosine_mse",
    "ANGLE_INT_CAST_THRESHOLD": "in_batch_negatives", "DEFAULT_POSITIVE_THRESHOLD": "in_batch_negatives",
    "POSITIVE_RULES": "in_batch_negatives", "in_batch_negatives_loss": "in_batch_negatives",
    "positive_mask": "in_batch_negatives",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"tuner.losses.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tuner.losses' has no attribute {name!r}")


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
