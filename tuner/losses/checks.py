"""Checks of a run's loss settings against the registry: weights, temperatures, the in-batch-negatives
threshold and duplicate rule. :class:`tuner.config.RunConfig` and :class:`tuner.losses.combined.CombinedLoss` both call
these, so a loss's rules live here and in :mod:`tuner.losses.registry` only (torch-free; errors are
:class:`~tuner.errors.ConfigError` naming the key: ``weights``, ``taus.ibn``, ...).
"""
from __future__ import annotations

from typing import Any, Mapping

from tuner.errors import ConfigError, check_number
from tuner.losses.registry import (
    FALLBACK_LOSS,
    LOSSES,
    canonical_loss,
    check_takes_tau,
    default_taus,
    parse_loss_values,
)


def check_loss_map(value: Any, key: str, taus: bool) -> dict[str, float]:
    """A table (or ``"cosent=1,ibn=0"`` text) of loss -> number, names made canonical; the numbers
    are finite, and with ``taus`` every loss must take a temperature."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return parse_loss_values(value, key, taus=taus)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table of loss -> number, got {value!r}")
    out: dict[str, float] = {}
    for name, number in value.items():
        try:
            loss = canonical_loss(name)
            if taus:
                check_takes_tau(loss)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        out[loss] = check_number(number, f"{key}.{loss}")
    return out


def check_weights(value: Any, key: str = "weights") -> dict[str, float]:
    """Loss weights -> one weight >= 0 per registered loss, in registry order (missing = 0 = off)."""
    weights = check_loss_map(value, key, taus=False)
    for name, w in weights.items():
        if w < 0:
            raise ConfigError(key, f"{name} is {w:g}; weights must be >= 0 (0 switches a loss off)")
    return {n: weights.get(n, 0.0) for n in LOSSES}


def check_taus(value: Any, key: str = "taus") -> dict[str, float]:
    """Temperatures -> one tau > 0 per loss that takes one; the missing ones are the registry's defaults."""
    taus = {**default_taus(), **check_loss_map(value, key, taus=True)}
    for name, tau in taus.items():
        if tau <= 0:
            raise ConfigError(key, f"{name} is {tau:g}; a temperature must be > 0 "
                                   f"(default {LOSSES[name].default_tau:g})")
    return taus


def check_positive_threshold(value: Any, key: str = "ibn_positive_threshold") -> float:
    """The in-batch-negatives positive threshold: a normalised score in 0..1."""
    number = check_number(value, key)
    if not 0 <= number <= 1:
        raise ConfigError(key, f"is {number}; use a value in 0..1 (0.6 = 3 of 5)")
    return number


#: What the in-batch-negatives loss does with a candidate whose text is identical to the anchor's own
#: positive (:mod:`tuner.losses.in_batch_negatives`): label it positive (the seed's rule), drop it
#: from the candidates, or leave it a negative (the loss before issue #24).
DUPLICATE_RULES: tuple[str, ...] = ("positive", "mask", "off")
DEFAULT_DUPLICATES = "positive"


def check_duplicates(value: Any, key: str = "ibn_duplicates") -> str:
    """The in-batch-negatives duplicate rule: one of :data:`DUPLICATE_RULES`."""
    rule = value.strip().lower() if isinstance(value, str) else value
    if rule not in DUPLICATE_RULES:
        raise ConfigError(key, f"is {value!r}; use one of {', '.join(DUPLICATE_RULES)}")
    return rule


def active_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The weights that train: the losses with weight > 0, in registry order; cosine-MSE alone
    (``{"cos_mse": 1.0}``) when every weight is 0."""
    on = {n: float(weights[n]) for n in LOSSES if weights.get(n, 0.0) > 0}
    return on or {FALLBACK_LOSS: 1.0}
