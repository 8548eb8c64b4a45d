"""The sentence-transformers format: the files beside a transformers model that tell
sentence-transformers how to pool (``modules.json``, ``1_Pooling``, ``2_Dense`` for ``cls_avg``,
the prompt). Reading a folder's declared pooling and writing the files for a model tuner saves;
:mod:`tuner.models._encoder` loads and saves through these functions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuner.jsonsafe import dumps
from tuner.models._decoder import PROMPT_SLOT
from tuner.models._pooling import Pooling
from tuner.models._post import read_post_modules, write_post_modules

# sentence-transformers Pooling config keys -> our pooling names (first match wins).
ST_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "avg"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_lasttoken", "last"),
)
ST_POOLING_MODE = {"cls": "cls", "avg": "mean", "max": "max", "last": "lasttoken"}


def st_pooling(folder: Path) -> "Pooling | None":
    """The pooling a sentence-transformers folder declares (its Pooling module's config), or None."""
    config = st_pooling_config(folder)
    if config:
        for key, name in ST_POOLING_KEYS:
            if config.get(key):
                return name
        if config.get("pooling_mode"):
            mode = str(config["pooling_mode"]).lower()
            return {"mean": "avg", "lasttoken": "last"}.get(mode, mode)
    return None


def st_pooling_config(folder: Path) -> dict[str, Any] | None:
    if not folder.is_dir():
        return None
    pooling_dir = folder / "1_Pooling"
    for module in _modules_json(folder):
        if str(module.get("type", "")).endswith("Pooling"):
            pooling_dir = folder / str(module.get("path", "1_Pooling"))
    config = pooling_dir / "config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text())
        except ValueError:
            return None
    return None


def _modules_json(folder: Path) -> list[dict[str, Any]]:
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return []
    return [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def st_post_modules(folder: Path) -> "list[nn.Module]":
    """The Dense/Normalize modules a folder's model applies after its pooling (:mod:`tuner.models._post`).

    A folder tuner saved lists them in ``tuner.json`` (``post_modules``; its own ``cls_avg`` Dense is
    not one of them); any other sentence-transformers folder in ``modules.json`` after the Pooling."""
    if not folder.is_dir():
        return []
    tuner_json = folder / "tuner.json"
    if tuner_json.is_file():
        try:
            entries = json.loads(tuner_json.read_text()).get("post_modules") or []
        except (ValueError, AttributeError):
            entries = []
        return read_post_modules(folder, -1, [{**e, "idx": i} for i, e in enumerate(entries)])
    modules = _modules_json(folder)
    pooling_idx = next((int(m.get("idx", 0)) for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    return [] if pooling_idx is None else read_post_modules(folder, pooling_idx, modules)


def write_st_modules(out: Path, pooling: Pooling, dim: int,
                     post: "list[nn.Module] | nn.Sequential" = ()) -> list[dict[str, Any]]:
    """sentence-transformers module files for ``pooling`` followed by ``post`` (see
    :func:`tuner.models._encoder.save_encoder`); returns the ``post`` modules' entries, which
    ``tuner.json`` records. Without a ``modules.json`` (a token-index pooling) only tuner applies them."""
    if pooling == 0:
        pooling = "cls"
    mode = ST_POOLING_MODE.get(pooling) if isinstance(pooling, str) else None
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pooling_dir = out / "1_Pooling"
    if mode is not None:
        config = {"word_embedding_dimension": dim, "pooling_mode": mode}
        config.update({key: ours == pooling for key, ours in ST_POOLING_KEYS})
    elif pooling == "cls_avg":
        config = {"word_embedding_dimension": dim, "pooling_mode": ["cls", "mean"]}
        dense_dir = out / "2_Dense"
        dense_dir.mkdir(exist_ok=True)
        from safetensors.torch import save_file

        eye = torch.eye(dim) / 2.0
        save_file({"linear.weight": torch.cat([eye, eye], dim=1).contiguous()}, str(dense_dir / "model.safetensors"))
        (dense_dir / "config.json").write_text(dumps({
            "in_features": 2 * dim, "out_features": dim, "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity"}, indent=2))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    else:
        (out / "modules.json").unlink(missing_ok=True)  # a stale one from an earlier save into the same folder
        return write_post_modules(out, post, 2)
    pooling_dir.mkdir(exist_ok=True)
    (pooling_dir / "config.json").write_text(dumps(config, indent=2))
    entries = write_post_modules(out, post, len(modules))
    (out / "modules.json").write_text(dumps(modules + entries, indent=2))
    return entries


def write_st_prompt(out: Path, prompt: "str | None") -> bool:
    """Write a prompt sentence-transformers can apply; returns whether it could.

    sentence-transformers puts a prompt *before* the text (``prompts`` + ``default_prompt_name`` in
    ``config_sentence_transformers.json``), so only a template that ends with ``{text}`` (and has it
    once) is written; one with words after the text (PromptEOL's ``... means in one word:"``) is
    not: sentence-transformers would encode the bare sentence, and only ``tuner.load_encoder``
    reproduces the model (``tuner.json`` records the prompt)."""
    path = out / "config_sentence_transformers.json"
    if not prompt or not prompt.endswith(PROMPT_SLOT) or prompt.count(PROMPT_SLOT) != 1:
        path.unlink(missing_ok=True)  # a stale one from an earlier save into the same folder
        return False
    path.write_text(dumps({"model_type": "SentenceTransformer", "prompts": {"tuner": prompt[:-len(PROMPT_SLOT)]},
                           "default_prompt_name": "tuner"}, indent=2))
    return True
