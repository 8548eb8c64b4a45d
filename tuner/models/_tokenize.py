"""Tokenise once, pad per batch.

Datasets are tokenised once (without padding) and cached in memory, keyed by tokenizer (name,
class, vocabulary size, prompt), max length and the texts themselves (a hash), so every trial in a worker
reuses the ids. The cache is bounded: at most :data:`_CACHE_SIZE` text lists and
:data:`_CACHE_BYTES` of ids (about 120 bytes per text plus 8 per token), least recently used
first out; a list bigger than the whole budget is returned but not kept. Batches are padded to
their own longest sentence only.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

_CACHE: "OrderedDict[tuple, list[np.ndarray]]" = OrderedDict()
_CACHE_SIZE = 32
_CACHE_BYTES = 512 * 2**20
_ENTRY_OVERHEAD = 120  # a small numpy array object (112 bytes) and its list slot
_SIZES: dict[tuple, int] = {}


def _key(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple:
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    vocab = getattr(tokenizer, "vocab_size", 0)
    prompt = getattr(tokenizer, "tuner_prompt", None)  # tuner.models._decoder.PromptedTokenizer
    return (getattr(tokenizer, "name_or_path", ""), type(tokenizer).__name__, vocab, prompt, max_length, len(texts),
            digest.hexdigest())


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """Token ids (with special tokens, truncated to ``max_length``) for each text; cached."""
    texts = [str(t) for t in texts]
    key = _key(tokenizer, texts, max_length)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    ids: list[np.ndarray] = []
    chunk = 4096
    for start in range(0, len(texts), chunk):
        encoded = tokenizer(texts[start:start + chunk], truncation=True, max_length=max_length,
                            add_special_tokens=True, return_attention_mask=False, return_token_type_ids=False)
        ids.extend(np.asarray(x, dtype=np.int64) for x in encoded["input_ids"])
    size = sum(x.nbytes for x in ids) + _ENTRY_OVERHEAD * len(ids)
    if size <= _CACHE_BYTES:
        _CACHE[key] = ids
        _SIZES[key] = size
        while len(_CACHE) > _CACHE_SIZE or cached_bytes() > _CACHE_BYTES:
            old, _ = _CACHE.popitem(last=False)
            _SIZES.pop(old, None)
    return ids


def cached_bytes() -> int:
    """About how much memory the cached ids take."""
    return sum(_SIZES.values())


def pad_batch(ids: Sequence[np.ndarray], pad_id: int, padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of id arrays to the batch's longest: returns (input_ids, attention_mask) on CPU."""
    longest = max(len(x) for x in ids)
    input_ids = np.full((len(ids), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    for row, x in enumerate(ids):
        if padding_side == "left":
            input_ids[row, longest - len(x):] = x
            mask[row, longest - len(x):] = 1
        else:
            input_ids[row, :len(x)] = x
            mask[row, :len(x)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def pad_id_of(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def clear_cache() -> None:
    _CACHE.clear()
    _SIZES.clear()
