"""LoRA adapters (through ``peft``): fine-tune a low-rank update instead of every weight.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) freezes a weight ``W`` and trains
``W + (alpha / r) * B @ A`` with ``A`` (r x in) and ``B`` (out x r, zero at the start, so training
starts from the base model exactly). Decoder embedders train this way: AnglE-LLaMA (r 32, alpha 32),
LLM2Vec (r 16). Run settings (:class:`tuner.config.RunConfig`): ``lora_r`` (0 = off, full
fine-tuning), ``lora_alpha`` (default: the rank, scale 1), ``lora_dropout``, ``lora_targets``
(module names such as ``q_proj,v_proj``; default: every linear layer, peft's ``all-linear``). It
works on encoders (BERT) as well as decoders.

LoRA's rules have one owner, this module: :func:`check_lora_value` checks each setting (RunConfig
and the study files' ``[search]`` call it) and :class:`LoraSettings` is the checked set, with
``alpha`` resolved to the rank when unset; :func:`attach` reads only that.

:func:`attach` wraps ``encoder.model`` in a peft model: only the adapter weights have
``requires_grad``, so AdamW (which takes the parameters that train) holds moments for them alone.
The count of trainable parameters is logged and returned. Saving (:func:`tuner.models._encoder.save_encoder`)
writes the adapter (:func:`save_adapter`) and a merged copy (:func:`merged_copy`); :func:`load_adapter`
puts a saved adapter back onto a freshly loaded base encoder.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Protocol, Union

from tuner.errors import ConfigError, TunerError, check_integer, check_number

if TYPE_CHECKING:
    from torch import nn


class Encoder(Protocol):
    """What LoRA needs of a :class:`tuner.models.Encoder`: its transformers model, replaceable."""

    model: "nn.Module"

    def eval(self) -> Any: ...


ADAPTER_DIR = "adapter"
ALL_LINEAR = "all-linear"
#: The run settings LoRA owns (fields of :class:`tuner.config.RunConfig`, keys of study files).
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
log = logging.getLogger("tuner.models._lora")


def check_lora_value(name: str, value: Any) -> Any:
    """One LoRA setting (``name`` of :data:`LORA_FIELDS`) checked and normalised; ConfigError naming it.

    ``lora_r``: an integer >= 0 (None counts as 0, no LoRA); ``lora_alpha``: None (the rank) or > 0;
    ``lora_dropout``: in [0, 1); ``lora_targets``: module names, a list or ``"q_proj,v_proj"``."""
    if name == "lora_r":
        rank = 0 if value is None else check_integer(value, name)
        if rank < 0:
            raise ConfigError(name, f"is {rank}; use 0 (full fine-tuning) or a rank such as 8 or 16")
        return rank
    if name == "lora_alpha":
        if value is None:
            return None
        alpha = check_number(value, name)
        if alpha <= 0:
            raise ConfigError(name, f"is {alpha:g}; use a positive number (scale = alpha / rank)")
        return alpha
    if name == "lora_dropout":
        dropout = check_number(value, name)
        if not 0 <= dropout < 1:
            raise ConfigError(name, f"is {dropout:g}; use a value in [0, 1)")
        return dropout
    if name == "lora_targets":
        targets = [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in targets):
            raise ConfigError(name, f"must be a list of module names such as q_proj,v_proj, got {targets!r}")
        return [t.strip() for t in targets]
    raise ValueError(f"{name!r} is not a LoRA setting; use one of {', '.join(LORA_FIELDS)}")


@dataclass(frozen=True)
class LoraSettings:
    """A run's LoRA settings, checked (:func:`check_lora_value`); ``r`` 0 means no LoRA.

    ``alpha`` left unset (None) is resolved to the rank here, and only here: scale ``alpha / r`` = 1.
    ``targets`` () is every linear layer (peft's ``all-linear``)."""

    r: int = 0
    alpha: Optional[Union[int, float]] = None
    dropout: float = 0.0
    targets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        r = check_lora_value("lora_r", self.r)
        alpha = check_lora_value("lora_alpha", self.alpha)
        object.__setattr__(self, "r", r)
        object.__setattr__(self, "alpha", r if alpha is None else alpha)
        object.__setattr__(self, "dropout", check_lora_value("lora_dropout", self.dropout))
        object.__setattr__(self, "targets", tuple(check_lora_value("lora_targets", self.targets)))


class HasLora(Protocol):
    """A run config (:class:`tuner.config.RunConfig`): its ``lora`` property is its :class:`LoraSettings`."""

    @property
    def lora(self) -> LoraSettings: ...


def is_lora(model: Any) -> bool:
    """True when ``model`` is wrapped in peft adapters."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def parameter_counts(module: "nn.Module") -> tuple[int, int]:
    """(trainable, total) parameter counts of ``module``."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft asks transformers a deprecated question (``is_gradient_checkpointing``): not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise TunerError("LoRA (lora_r > 0) needs the peft package; install the LLM extra: "
                         "pip install 'tuner[llm]'") from None
    return peft


def attach(encoder: "Encoder", settings: "LoraSettings | HasLora") -> int:
    """Wrap ``encoder.model`` in LoRA adapters as ``settings`` (or a run config's ``.lora``) say;
    returns the trainable-parameter count.

    The adapters' random init draws from torch's generator: seed before calling for a repeatable
    run. An encoder that already has adapters keeps them (they train on)."""
    lora = settings if isinstance(settings, LoraSettings) else settings.lora
    if not lora.r:
        raise TunerError("lora_r is 0, so there is no adapter to attach; set lora_r to a rank such as 8")
    if not is_lora(encoder.model):
        peft = _peft()
        targets = list(lora.targets) or ALL_LINEAR
        config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                                 bias="none")
        try:
            with _quiet_peft():
                encoder.model = peft.get_peft_model(encoder.model, config)
        except ValueError as exc:
            raise TunerError(f"lora_targets: {str(exc).splitlines()[0]}; use names of linear layers of this "
                             f"model, e.g. {', '.join(linear_names(encoder.model)[:6])}") from None
    trainable, total = parameter_counts(encoder.model)
    log.info("LoRA r=%d alpha=%g on %s: %s of %s parameters train (%.2f%%)", lora.r, lora.alpha,
             ",".join(lora.targets) or ALL_LINEAR, f"{trainable:,}", f"{total:,}", 100.0 * trainable / max(total, 1))
    return trainable


def linear_names(model: "nn.Module") -> list[str]:
    """Distinct last names of the linear layers of ``model`` (what ``lora_targets`` takes)."""
    from torch import nn

    names = dict.fromkeys(n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear))
    return list(names)


def save_adapter(model: "nn.Module", folder: "str | os.PathLike") -> Path:
    """Write the adapter weights and their config (peft's ``adapter_model.safetensors`` + ``adapter_config.json``)."""
    out = Path(folder)
    with _quiet_peft():
        model.save_pretrained(out)
    return out


def merged_copy(model: "nn.Module") -> "nn.Module":
    """A plain transformers model with the adapters folded into its weights; ``model`` is left as it is.

    Costs a second copy of the weights while it exists (fine for the small decoders this runs on)."""
    with _quiet_peft():
        return copy.deepcopy(model).merge_and_unload()


def load_adapter(encoder: "Encoder", folder: "str | os.PathLike") -> "Encoder":
    """Put the adapter saved in ``folder`` (a saved model's ``adapter/``, or the folder itself) onto
    ``encoder``'s base model, in place; the encoder is in eval mode after."""
    peft = _peft()
    path = Path(folder)
    if not (path / "adapter_config.json").is_file() and (path / ADAPTER_DIR / "adapter_config.json").is_file():
        path = path / ADAPTER_DIR
    if not (path / "adapter_config.json").is_file():
        raise TunerError(f"{folder} holds no LoRA adapter (no adapter_config.json); pass the adapter/ folder of a "
                         "model saved with lora_r > 0")
    with _quiet_peft():
        encoder.model = peft.PeftModel.from_pretrained(encoder.model, str(path))
    encoder.eval()
    return encoder
