"""Pooling: token embeddings [B, T, d] + attention mask [B, T] -> sentence embeddings [B, d].

Every strategy is padding-safe: a sentence's embedding is the same whether it is encoded
alone or in a padded batch, with right or left padding.

- ``cls``      hidden state of the first token ([CLS] / <s>).
- ``cls_avg``  mean of ``cls`` and ``avg`` (as in AnglE's "cls_avg").
- ``avg``      mean over the real tokens *of each row* (the original seed divided by the
               whole batch's token count, which made embeddings depend on batch-mates).
- ``max``      element-wise max over real tokens (padding set to -inf first).
- ``last``     hidden state of the last real token; works for right and left padding.
- ``<int>``    hidden state at that token index (e.g. ``0`` == cls); negative indexes count
               from the last real token (``-1`` == last).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Union

from tuner.errors import TunerError

if TYPE_CHECKING:  # torch is imported where pooling runs, so parse_pooling stays torch-free
    import torch

Pooling = Union[str, int]
#: The pooling names, the one list (the run config's help, the study files' checks and messages read it).
POOLING_NAMES = ("cls", "cls_avg", "avg", "max", "last")
#: The pooling of a model that declares none: ``cls`` for an encoder, ``last`` for a decoder (whose last
#: token is the only one that has seen the whole sentence). A model's own declared pooling comes first
#: (:func:`tuner.models._encoder.default_pooling`).
ENCODER_POOLING = "cls"
DECODER_POOLING = "last"


def fallback_pooling(causal: bool) -> Pooling:
    """The pooling of a model that declares none (``last`` for a decoder, else ``cls``)."""
    return DECODER_POOLING if causal else ENCODER_POOLING


def _unknown(value: object) -> TunerError:
    return TunerError(f"unknown pooling {value!r}; use one of {', '.join(POOLING_NAMES)} or an integer token index")


def parse_pooling(value: "str | int") -> Pooling:
    """Normalise a user-given pooling (``"avg"``, ``"mean"``, ``"3"``, ``3``) or raise TunerError.

    The one check of a pooling: the run config, the study files and the encoders all call it."""
    if isinstance(value, bool):
        raise TunerError(f"pooling {value!r} is not valid; use one of {', '.join(POOLING_NAMES)} or a token index")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    aliases = {"mean": "avg", "average": "avg", "first": "cls", "cls-avg": "cls_avg", "lasttoken": "last"}
    text = aliases.get(text, text)
    if text in POOLING_NAMES:
        return text
    try:
        return int(text)
    except ValueError:
        raise _unknown(value) from None


def _masked_mean(hidden: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    m = mask.unsqueeze(-1).to(hidden.dtype)
    counts = m.sum(dim=1).clamp(min=1.0)
    return (hidden * m).sum(dim=1) / counts


def _real_token_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, last) index of real tokens per row; correct for right and left padding."""
    import torch

    t = mask.shape[1]
    positions = torch.arange(t, device=mask.device).unsqueeze(0).expand_as(mask)
    real = mask.bool()
    last = torch.where(real, positions, torch.full_like(positions, -1)).max(dim=1).values
    first = torch.where(real, positions, torch.full_like(positions, t)).min(dim=1).values
    return first.clamp(max=t - 1), last.clamp(min=0)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool ``hidden`` [B, T, d] under ``mask`` [B, T] (1 = real token) with ``pooling``."""
    import torch

    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "avg":
        return _masked_mean(hidden, mask)
    if pooling == "cls":
        first, _ = _real_token_positions(mask)
        return hidden[rows, first]
    if pooling == "cls_avg":
        first, _ = _real_token_positions(mask)
        return (hidden[rows, first] + _masked_mean(hidden, mask)) / 2.0
    if pooling == "max":
        filled = hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
        return filled.max(dim=1).values
    if pooling == "last":
        _, last = _real_token_positions(mask)
        return hidden[rows, last]
    if isinstance(pooling, int):
        first, last = _real_token_positions(mask)
        index = first + pooling if pooling >= 0 else last + 1 + pooling
        # An index past the sentence falls back to its last (or first) real token.
        index = torch.minimum(torch.maximum(index, first), last)
        return hidden[rows, index]
    raise _unknown(pooling)
