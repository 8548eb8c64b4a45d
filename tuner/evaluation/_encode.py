"""Encoding: sentences -> float32 embeddings, batched by token length, in the input order."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from tuner.models import Encoder
from tuner.models._tokenize import pad_batch, pad_id_of, tokenize


@torch.inference_mode()
def encode(encoder: Encoder, texts: Sequence[str], batch_size: int = 64, max_seq_length: int = 128,
           precision: str = "fp32") -> np.ndarray:
    """Embed ``texts`` -> float32 array [n, d], in the input order.

    Batches are formed over texts sorted by token length (longest first), so each is padded to
    its own longest sentence; results are put back in input order.
    """
    if len(texts) == 0:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    ids = tokenize(encoder.tokenizer, texts, max_seq_length)
    order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    device = encoder.device
    pad_id = pad_id_of(encoder.tokenizer)
    side = getattr(encoder.tokenizer, "padding_side", "right")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if device.type == "cuda" else None
    out = None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in rows], pad_id, side)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            emb = encoder(input_ids.to(device), mask.to(device))
        emb = emb.float().cpu().numpy()
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[rows] = emb
    if was_training:
        encoder.train()
    return out
