"""A loss added the way a user adds one: this file plus one register_loss call.

Loaded through ``TUNER_PLUGINS=_toy_loss`` (with ``tests/`` on PYTHONPATH), so the CLI, every
worker process and the exporter all know it."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tuner.losses.registry import LossSpec, register_loss


def toy_loss(a: Tensor, b: Tensor, labels: Tensor, tau: float = 2.0) -> Tensor:
    """Squared error between ``tau``-scaled cosine similarity and ``tau``-scaled labels."""
    return ((tau * F.cosine_similarity(a, b, dim=-1) - tau * labels) ** 2).mean()


register_loss(LossSpec("toy", "Toy", "Toy", "_toy_loss:toy_loss", default_tau=2.0, color="#00ced1", marker="H"))
