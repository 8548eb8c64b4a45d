"""Weighted combination of the registered losses, as in AnglE's training objective.

    total = sum_k w_k * loss_k(tau_k),   k in the loss registry (tuner.losses.registry)

Missing weights are 0. If every weight is 0 (the seed's default) the loss is plain cosine-MSE with
weight 1, so a run always trains something. Which functions exist, which take a temperature and
which extra options they read from the run config all come from the registry.

NLI runs (:mod:`tuner.data.nli`) give each loss its own view of the same rows: the losses with a
``triplet`` form in the registry (in-batch negatives) train on (premise, entailed, contradiction)
triplets through :meth:`CombinedLoss.triplets`, the others on scored pairs through ``forward(...,
names=pair_losses)``; the step's loss is the weighted sum of both.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from tuner.errors import ConfigError, TunerError
from tuner.losses.checks import (
    DEFAULT_DUPLICATES,
    active_weights,
    check_duplicates,
    check_positive_threshold,
    check_taus,
    check_weights,
)
from tuner.losses.in_batch_negatives import DEFAULT_POSITIVE_THRESHOLD
from tuner.losses.registry import LOSSES


class LossSettings(Protocol):
    """What :meth:`CombinedLoss.from_config` reads of a run (a :class:`tuner.config.RunConfig`): its
    weights and taus, and the fields the registry's ``options`` name (``ibn_positive_threshold``,
    ``ibn_duplicates``)."""

    weights: dict[str, float]
    taus: dict[str, float]


class CombinedLoss(torch.nn.Module):
    """total = sum_k w_k * loss_k over the registered losses; missing weights -> 0.

    Args:
        weights: loss name (or alias) -> non-negative weight; all 0 -> cosine-MSE alone.
        taus: loss name -> temperature, for the losses that take one; defaults from the registry.
        ibn_positive_threshold: normalised label from which a pair is a positive for the
            in-batch-negatives loss (0.6 = raw 3 of 0..5).
        ibn_duplicates: what a candidate identical to an anchor's own positive is for in-batch
            negatives: ``positive``, ``mask`` or ``off`` (:mod:`tuner.losses.in_batch_negatives`).

    Attributes:
        active: the non-zero weights actually used.
        taus: the temperatures in use, defaults filled in.
    """

    def __init__(self, weights: Mapping[str, float], taus: Mapping[str, float] | None = None,
                 ibn_positive_threshold: float = DEFAULT_POSITIVE_THRESHOLD,
                 ibn_duplicates: str = DEFAULT_DUPLICATES) -> None:
        super().__init__()
        try:  # the checks RunConfig makes, worded the way the loss always has ("loss weights ...")
            checked = {"weights": check_weights(dict(weights)), "taus": check_taus(dict(taus or {})),
                       "ibn_positive_threshold": check_positive_threshold(ibn_positive_threshold),
                       "ibn_duplicates": check_duplicates(ibn_duplicates)}
        except ConfigError as exc:
            raise TunerError(f"loss {exc}") from None
        self._setup(checked)

    @classmethod
    def from_config(cls, config: LossSettings) -> "CombinedLoss":
        """The loss a run config describes (weights, taus and the registry's per-loss options)."""
        loss = cls.__new__(cls)
        torch.nn.Module.__init__(loss)
        names = ("weights", "taus", *dict.fromkeys(a for spec in LOSSES.values()
                                                    for a in (*spec.options.values(), *spec.triplet_options.values())))
        loss._setup({name: getattr(config, name) for name in names})
        return loss

    def _setup(self, settings: Mapping[str, Any]) -> None:
        """``settings``: checked run settings by field name (``weights``, ``taus``, and the fields the
        registry's ``options`` name); an option whose field is not there keeps its function's default."""
        self.active: dict[str, float] = active_weights(settings["weights"])
        self.taus: dict[str, float] = dict(settings["taus"])
        self.ibn_positive_threshold = settings.get("ibn_positive_threshold", DEFAULT_POSITIVE_THRESHOLD)
        self.ibn_duplicates = settings.get("ibn_duplicates", DEFAULT_DUPLICATES)
        self._functions: dict[str, Callable[..., Tensor]] = {}
        self._kwargs: dict[str, dict[str, Any]] = {}
        for name in self.active:
            spec = LOSSES[name]
            kwargs: dict[str, Any] = {key: settings[attr] for key, attr in spec.options.items() if attr in settings}
            if spec.has_tau:
                kwargs["tau"] = self.taus[name]
            self._functions[name] = spec.load()
            self._kwargs[name] = kwargs
        self.triplet_losses: tuple[str, ...] = tuple(n for n in self.active if LOSSES[n].triplet)
        self.pair_losses: tuple[str, ...] = tuple(n for n in self.active if n not in self.triplet_losses)
        self._triplet_functions = {n: LOSSES[n].load(triplet=True) for n in self.triplet_losses}
        self._triplet_kwargs = {n: {**{key: settings[attr] for key, attr in LOSSES[n].triplet_options.items()
                                       if attr in settings},
                                    **({"tau": self.taus[n]} if LOSSES[n].has_tau else {})}
                                for n in self.triplet_losses}
        #: Whether an active loss reads text identity (``text_ids=`` of :meth:`forward` / :meth:`triplets`).
        self.wants_text_ids: bool = any(LOSSES[n].text_ids for n in self.active)

    def forward(self, embeddings: Tensor, labels: Tensor, names: tuple[str, ...] | None = None,
                text_ids: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss of a zigzag batch ``[a0, b0, a1, b1, ...]`` (``[2N, d]``) with ``[N]`` labels; ``names``:
        only these active losses (an NLI run's pair losses), default all; ``text_ids``: ``[2N]`` integers
        in the same order, equal = identical text, for the losses whose registry entry takes them.

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
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, weight in self.active.items():
            if names is not None and name not in names:
                continue
            ids = {"text_ids": (text_ids[0::2], text_ids[1::2])} if text_ids is not None and LOSSES[name].text_ids else {}
            value = self._functions[name](a, b, labels, **self._kwargs[name], **ids)
            parts[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        if total is None:
            raise ValueError(f"none of {names} is an active loss ({', '.join(self.active)})")
        return total, parts

    def triplets(self, anchor: Tensor, positive: Tensor, negative: Tensor,
                 text_ids: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """Weighted sum of the active triplet losses on NLI triplets: ``anchor``/``positive`` ``[N, d]``,
        ``negative`` ``[M, d]`` (the rows that have a contradiction); ``text_ids``: ``[2N + M]`` integers
        for those rows in that order, equal = identical text."""
        if not self.triplet_losses:
            raise ValueError(f"no active loss takes triplets ({', '.join(self.active)})")
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name in self.triplet_losses:
            n, ids = anchor.shape[0], {}
            if text_ids is not None and LOSSES[name].text_ids:
                ids = {"text_ids": (text_ids[:n], text_ids[n:2 * n], text_ids[2 * n:])}
            value = self._triplet_functions[name](anchor, positive, negative, **self._triplet_kwargs[name], **ids)
            parts[name] = float(value.detach())
            total = self.active[name] * value if total is None else total + self.active[name] * value
        assert total is not None
        return total, parts

    def extra_repr(self) -> str:
        return (f"active={self.active}, taus={self.taus}, ibn_positive_threshold={self.ibn_positive_threshold}, "
                f"ibn_duplicates={self.ibn_duplicates}")
