"""The modules a sentence-transformers model runs after its pooling: ``Dense`` and ``Normalize``.

all-MiniLM-L6-v2 and all-mpnet-base-v2 are Transformer -> Pooling -> Normalize; others add a
``Dense`` projection (LaBSE, GTR, ...). Cosine scores ignore a normalisation, but the SentEval
logistic regression does not, and a Dense layer changes every score: the embedding tuner trains and
scores is the model's own, so these modules are read from ``modules.json``, trained with the rest
(a Dense layer's weights are parameters), and written back when the model is saved.

Other module types after the pooling (LayerNorm, LSTM, ...) are not applied: loading such a model
logs one warning naming them, and its embeddings then differ from sentence-transformers'.
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuner.errors import TunerError
from tuner.jsonsafe import dumps

_log = logging.getLogger("tuner.models")
ST_DENSE = "sentence_transformers.models.Dense"
ST_NORMALIZE = "sentence_transformers.models.Normalize"
_IDENTITY = "torch.nn.modules.linear.Identity"


class Normalize(nn.Module):
    """L2-normalise each embedding (sentence-transformers' ``Normalize``)."""

    st_type = ST_NORMALIZE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=-1)


class Dense(nn.Module):
    """``activation(linear(x))`` (sentence-transformers' ``Dense``; its weights train with the model)."""

    st_type = ST_DENSE

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation_function: str = _IDENTITY) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation_function = activation_function
        self.activation = _activation(activation_function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    def config(self) -> dict[str, Any]:
        return {"in_features": self.linear.in_features, "out_features": self.linear.out_features,
                "bias": self.linear.bias is not None, "activation_function": self.activation_function}


def _activation(path: str) -> nn.Module:
    """An activation named by its import path; only ``torch.nn`` classes (a config is not code to run)."""
    module_name, _, cls_name = path.rpartition(".")
    if not module_name.startswith("torch.nn"):
        raise TunerError(f"Dense activation {path!r} is not a torch.nn class; tuner only builds torch.nn activations")
    try:
        return getattr(importlib.import_module(module_name), cls_name)()
    except (ImportError, AttributeError, TypeError) as exc:
        raise TunerError(f"cannot build the Dense activation {path!r}: {exc}") from None


def _read_dense(folder: Path) -> Dense:
    config = json.loads((folder / "config.json").read_text())
    dense = Dense(int(config["in_features"]), int(config["out_features"]), bool(config.get("bias", True)),
                  str(config.get("activation_function", _IDENTITY)))
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise TunerError(f"{folder} has no model.safetensors or pytorch_model.bin; the Dense module cannot be loaded")
    dense.load_state_dict(state)
    return dense


def read_post_modules(folder: Path, pooling_index: int, modules: list[dict[str, Any]]) -> list[nn.Module]:
    """The Dense/Normalize modules listed in ``modules`` (``modules.json``) after ``pooling_index``."""
    post: list[nn.Module] = []
    skipped = []
    for entry in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        if int(entry.get("idx", 0)) <= pooling_index:
            continue
        kind = str(entry.get("type", ""))
        if kind == ST_NORMALIZE:
            post.append(Normalize())
        elif kind == ST_DENSE:
            post.append(_read_dense(folder / entry.get("path", "")))
        else:
            skipped.append(kind)
    if skipped:
        _log.warning("%s: sentence-transformers module(s) %s after the pooling are not applied by tuner; its "
                     "embeddings differ from sentence-transformers' for this model", folder, ", ".join(skipped))
    return post


def write_post_modules(out: Path, post: "nn.Sequential | list[nn.Module]", first_idx: int) -> list[dict[str, Any]]:
    """Write each module's folder (``<idx>_Dense``, ``<idx>_Normalize``); returns their ``modules.json`` entries."""
    entries = []
    for idx, module in enumerate(post, start=first_idx):
        name = type(module).__name__
        folder = out / f"{idx}_{name}"
        folder.mkdir(exist_ok=True)
        if isinstance(module, Dense):
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(folder / "model.safetensors"))
            (folder / "config.json").write_text(dumps(module.config(), indent=2))
        entries.append({"idx": idx, "name": str(idx), "path": folder.name, "type": module.st_type})
    return entries
