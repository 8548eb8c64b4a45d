"""Weighted combination of the pair losses, as in AnglE's training objective.

    total = sum_k w_k * loss_k,   k in {"cos_mse", "cosent", "ibn", "angle"}

Missing weights are 0. If every weight is 0 (the search's seed default) the
loss is plain cosine-MSE with weight 1, so a trial always trains something.
Weights, temperatures and the IBN positive threshold are validated here and
rejected with a one-line ``TunerError``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from tuner.errors import TunerError
from tuner.losses.angle import angle_loss
from tuner.losses.cosent import cosent_loss
from tuner.losses.cosine_mse import cosine_mse_loss
from tuner.losses.in_batch_negatives import (
    DEFAULT_POSITIVE_THRESHOLD,
    in_batch_negatives_loss,
)

LOSS_NAMES: tuple[str, ...] = ("cos_mse", "cosent", "ibn", "angle")
DEFAULT_TAUS: dict[str, float] = {"cosent": 20.0, "ibn": 20.0, "angle": 1.0}


def _number(value: object, what: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TunerError(f"{what} is {value!r}; it must be a number") from None


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    checked = {}
    for name, value in weights.items():
        if name not in LOSS_NAMES:
            raise TunerError(
                f"unknown loss {name!r} in the loss weights; use one of {', '.join(LOSS_NAMES)}"
            )
        w = _number(value, f"loss weight {name!r}")
        if not math.isfinite(w) or w < 0:
            raise TunerError(
                f"loss weight {name!r} is {w}; weights must be finite and >= 0 "
                "(use 0 to switch a loss off)"
            )
        checked[name] = w
    return checked


def _check_taus(taus: Mapping[str, float] | None) -> dict[str, float]:
    checked = dict(DEFAULT_TAUS)
    for name, value in (taus or {}).items():
        if name not in DEFAULT_TAUS:
            raise TunerError(
                f"unknown temperature {name!r}; only {', '.join(DEFAULT_TAUS)} take a tau"
            )
        tau = _number(value, f"tau for {name!r}")
        if not math.isfinite(tau) or tau <= 0:
            raise TunerError(
                f"tau for {name!r} is {tau}; it must be a finite number > 0 "
                f"(default {DEFAULT_TAUS[name]})"
            )
        checked[name] = tau
    return checked


class CombinedLoss(torch.nn.Module):
    """total = sum_k w_k * loss_k over ``LOSS_NAMES``; missing weights -> 0.

    If every weight is 0 (the seed's default), the loss is plain cosine-MSE
    (weight 1).

    Args:
        weights: loss name -> non-negative weight.
        taus: loss name -> scale, for "cosent", "ibn", "angle"; defaults from
            ``DEFAULT_TAUS``.
        ibn_positive_threshold: normalised label from which a pair is a
            positive for the in-batch-negatives loss (0.6 = raw 3 of 0..5).

    Attributes:
        active: the non-zero weights actually used.
        taus: the scales in use, defaults filled in.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        taus: Mapping[str, float] | None = None,
        ibn_positive_threshold: float = DEFAULT_POSITIVE_THRESHOLD,
    ) -> None:
        super().__init__()
        checked = _check_weights(weights)
        self.active: dict[str, float] = {
            name: checked[name] for name in LOSS_NAMES if checked.get(name, 0.0) > 0
        } or {"cos_mse": 1.0}
        self.taus: dict[str, float] = _check_taus(taus)
        threshold = _number(ibn_positive_threshold, "ibn_positive_threshold")
        if not 0.0 <= threshold <= 1.0:
            raise TunerError(
                f"ibn_positive_threshold is {threshold}; it is a normalised label, "
                "use a value in 0..1 (0.6 = raw 3 of 0..5)"
            )
        self.ibn_positive_threshold = threshold

    def _parts(self) -> dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]]:
        return {
            "cos_mse": cosine_mse_loss,
            "cosent": lambda a, b, y: cosent_loss(a, b, y, tau=self.taus["cosent"]),
            "ibn": lambda a, b, y: in_batch_negatives_loss(
                a, b, y, tau=self.taus["ibn"], positive_threshold=self.ibn_positive_threshold
            ),
            "angle": lambda a, b, y: angle_loss(a, b, y, tau=self.taus["angle"]),
        }

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Loss of a zigzag batch ``[a0, b0, a1, b1, ...]`` (``[2N, d]``) with ``[N]`` labels.

        Returns:
            ``(total, parts)``: the weighted sum (float32 scalar) and each active
            loss's unweighted value as a float.
        """
        if embeddings.dim() != 2 or embeddings.shape[0] % 2:
            shape = tuple(embeddings.shape)
            raise ValueError(f"embeddings must be [2N, d] in zigzag order, got {shape}")
        a, b = embeddings[0::2], embeddings[1::2]
        labels = labels.view(-1)
        if labels.numel() != a.shape[0]:
            n = a.shape[0]
            raise ValueError(f"expected {n} labels for {n} pairs, got {labels.numel()}")
        functions = self._parts()
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, weight in self.active.items():
            value = functions[name](a, b, labels)
            parts[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        assert total is not None  # active is never empty
        return total, parts

    def extra_repr(self) -> str:
        return (
            f"active={self.active}, taus={self.taus}, "
            f"ibn_positive_threshold={self.ibn_positive_threshold}"
        )
