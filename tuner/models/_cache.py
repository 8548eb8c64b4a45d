"""One base model per process, kept as CPU tensors, so a worker reads a model from disk once.

A worker runs many trials of the same model. The first :func:`tuner.models._encoder.load_encoder` of a
model loads it with ``from_pretrained`` and keeps, here:

* its weights: every parameter and buffer (non-persistent buffers too) as a detached CPU copy;
* a *template*: the same module on the ``meta`` device (structure, config and attributes, no data);
* its tokenizer.

Later loads of the same model build the module by deep-copying the template with each meta
tensor replaced by a fresh copy of the kept weights on the target device (straight to the GPU on a
GPU worker). There are no disk reads, no ``from_pretrained`` and no weight initialisation, and
every trial starts from the same base weights, bit for bit: a trial's fine-tuning changes its own
copy only. Tied weights stay tied (one copy per kept tensor). The tokenizer is shared.

Memory is bounded: at most one model is kept. Loading another model (a worker alternating models
in a multi-model grid) evicts the previous one first, so such a worker reads from disk on every
switch. Local folders are keyed by their files' sizes and modification times, so a folder saved
again in place is loaded again. ``TUNER_MODEL_CACHE=0`` turns the cache off: every load reads from
disk and nothing is kept.
"""
from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

ENV = "TUNER_MODEL_CACHE"


def cache_enabled() -> bool:
    """False when ``$TUNER_MODEL_CACHE`` is 0/false/no/off (default: on)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_key(source: str) -> tuple:
    """``source`` plus, for a local folder, the name, size and mtime of each file directly in it."""
    folder = Path(source)
    if not folder.is_dir():
        return (source,)
    stamps = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            stat = entry.stat()
            stamps.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return (source, tuple(stamps))


@dataclass
class BaseModel:
    """A model's weights (CPU tensors), its meta-device template and its tokenizer."""

    key: tuple
    template: nn.Module
    # id(meta tensor) -> (CPU weights, is_param, requires_grad, the tensor's attributes)
    slots: dict[int, tuple[torch.Tensor, bool, bool, dict]]
    tokenizer: Any
    nbytes: int

    @classmethod
    def capture(cls, key: tuple, model: nn.Module, tokenizer: Any) -> "BaseModel":
        """Keep a copy of ``model``'s weights; ``model`` itself is left to the caller."""
        memo: dict[int, Any] = {}
        slots: dict[int, tuple[torch.Tensor, bool, bool, dict]] = {}
        nbytes = 0
        for module in model.modules():
            for table, is_param in ((module._parameters, True), (module._buffers, False)):
                for tensor in table.values():
                    if tensor is None or id(tensor) in memo:
                        continue  # tied: one copy, and the template shares one meta tensor
                    data = tensor.detach()
                    kept = data.to("cpu", copy=True)
                    meta = torch.empty_like(data, device="meta")
                    if is_param:
                        meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
                    memo[id(tensor)] = meta
                    # e.g. transformers' _is_hf_initialized, which a deep copy would keep too
                    attrs = copy.deepcopy(getattr(tensor, "__dict__", {}))
                    slots[id(meta)] = (kept, is_param, bool(tensor.requires_grad), attrs)
                    nbytes += kept.numel() * kept.element_size()
        template = copy.deepcopy(model, memo)
        return cls(key, template, slots, tokenizer, nbytes)

    def build(self, device: "torch.device | str" = "cpu") -> nn.Module:
        """A new module with its own copy of the base weights on ``device``."""
        device = torch.device(device)
        memo: dict[int, Any] = {}
        for meta_id, (kept, is_param, requires_grad, attrs) in self.slots.items():
            data = kept.to(device, copy=True)
            if is_param:
                data = nn.Parameter(data, requires_grad=requires_grad)
            if attrs:
                data.__dict__.update(copy.deepcopy(attrs))
            memo[meta_id] = data
        return copy.deepcopy(self.template, memo)


_LOCK = threading.Lock()
_KEPT: dict[tuple, BaseModel] = {}
_STATS = {"disk_loads": 0, "cache_loads": 0}


def load(source: str, from_disk: Callable[[str], "tuple[nn.Module, Any]"],
         device: "torch.device | str" = "cpu") -> "tuple[nn.Module, Any]":
    """``(model, tokenizer)`` of ``source`` with private weights on ``device``.

    ``from_disk(source) -> (model, tokenizer)`` is called on a miss (the first load, a changed
    folder, another model, or the cache turned off).
    """
    if not cache_enabled():
        clear()
        model, tokenizer = from_disk(source)
        _STATS["disk_loads"] += 1
        return model.to(device), tokenizer
    key = cache_key(source)
    with _LOCK:
        base = _KEPT.get(key)
        if base is None:
            _KEPT.clear()  # at most one model: drop the previous one before reading the next
            model, tokenizer = from_disk(source)
            _KEPT[key] = BaseModel.capture(key, model, tokenizer)
            _STATS["disk_loads"] += 1
            return model.to(device), tokenizer
        _STATS["cache_loads"] += 1
    return base.build(device), base.tokenizer


def clear() -> None:
    """Forget the kept model (its memory goes with the last reference)."""
    with _LOCK:
        _KEPT.clear()


def info() -> dict[str, Any]:
    """What is kept (source, MiB of weights) and how many loads came from disk and from memory."""
    with _LOCK:
        kept = [{"source": key[0], "mib": round(base.nbytes / 2**20, 1)} for key, base in _KEPT.items()]
    return {"enabled": cache_enabled(), "kept": kept, **_STATS}
