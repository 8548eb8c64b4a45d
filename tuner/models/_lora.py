"""LoRA adapters (through ``peft``): fine-tune a low-rank update instead of every weight.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) freezes a weight ``W`` and trains
``W + (alpha / r) * B @ A`` with ``A`` (r x in) and ``B`` (out x r, zero at the start, so training
starts from the base model exactly). Decoder embedders train this way: AnglE-LLaMA (r 32, alpha 32),
LLM2Vec (r 16). Run settings (:class:`tuner.config.RunConfig`): ``lora_r`` (0 = off, full
fine-tuning), ``lora_alpha`` (default: the rank, scale 1), ``lora_dropout``, ``lora_targets``
(module names such as ``q_proj,v_proj``; default: every linear layer, peft's ``all-linear``). It
works on encoders (BERT) as well as decoders.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from tuner.config import RunConfig
from tuner.errors import TunerError

if TYPE_CHECKING:
    from torch import nn


class Encoder(Protocol):
    """What LoRA needs of a :class:`tuner.models.Encoder`: its transformers model, replaceable."""

    model: "nn.Module"

    def eval(self) -> Any: ...

ADAPTER_DIR = "adapter"
ALL_LINEAR = "all-linear"
log = logging.getLogger("tuner.models._lora")


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


def attach(encoder: "Encoder", config: "RunConfig") -> int:
    """Wrap ``encoder.model`` in LoRA adapters as ``config`` says; returns the trainable-parameter count.

    The adapters' random init draws from torch's generator: seed before calling for a repeatable
    run. An encoder that already has adapters keeps them (they train on)."""
    if not config.lora_r:
        raise TunerError("lora_r is 0, so there is no adapter to attach; set lora_r to a rank such as 8")
    if not is_lora(encoder.model):
        peft = _peft()
        targets = list(config.lora_targets) or ALL_LINEAR
        settings = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha or config.lora_r,
                                   lora_dropout=config.lora_dropout, target_modules=targets, bias="none")
        try:
            with _quiet_peft():
                encoder.model = peft.get_peft_model(encoder.model, settings)
        except ValueError as exc:
            raise TunerError(f"lora_targets: {str(exc).splitlines()[0]}; use names of linear layers of this "
                             f"model, e.g. {', '.join(linear_names(encoder.model)[:6])}") from None
    trainable, total = parameter_counts(encoder.model)
    log.info("LoRA r=%d alpha=%g on %s: %s of %s parameters train (%.2f%%)", config.lora_r,
             config.lora_alpha or config.lora_r, ",".join(config.lora_targets) or ALL_LINEAR,
             f"{trainable:,}", f"{total:,}", 100.0 * trainable / max(total, 1))
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
