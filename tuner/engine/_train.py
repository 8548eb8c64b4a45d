"""The fine-tuning loop: plain PyTorch, readable top to bottom.

AdamW, linear warmup then linear decay, gradient clipping, seeded; epochs or max_steps;
batches of sentence pairs in the zigzag layout ``[a0, b0, a1, b1, ...]`` encoded in one forward
pass and padded to the batch's longest; length-grouped batching (random batch composition within
a length bucket, buckets shuffled) so padding stays small while in-batch negatives stay random.
Mixed precision on GPU (bf16 where supported, else fp16 with loss scaling), fp32 on CPU.
``lora_r > 0`` wraps the model in LoRA adapters first (:mod:`tuner.models._lora`): only they train; a prompt
(decoders, :mod:`tuner.models._decoder`) goes into the encoder's tokenizer, so scoring applies it too.

NLI data (:class:`NliTrainData`) gives each loss its own view of the same rows: the pair losses a
batch of scored pairs, the triplet losses (in-batch negatives) a batch of (premise, entailed,
contradiction) triplets, each view encoded in its own forward pass; a step takes one batch of every
view that has an active loss and steps on the weighted sum. An epoch is one pass over the larger
view; the smaller one starts again (reshuffled) when it runs out. A loss that reads text identity
(in-batch negatives' duplicate rule) gets one integer per encoded row, equal = identical text (:func:`text_ids`).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from tuner.models import _lora as lora
from tuner.config import RunConfig
from tuner.errors import TunerError
from tuner.losses.combined import CombinedLoss
from tuner.models._encoder import Encoder
from tuner.models._tokenize import pad_batch, pad_id_of, tokenize
from tuner.engine._train_data import (NliTrainData, PairData, TripletData, nli_train_data,  # noqa: F401
                                      pairs_from_frame, text_ids)


@dataclass
class TrainResult:
    steps: int
    examples: int
    wall_s: float
    pairs_per_s: float
    losses: list[float]  # total loss per step
    loss_parts: dict[str, list[float]]
    precision: str
    trainable_params: int = 0  # parameters that trained (LoRA: the adapters only)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           bucket_batches: int = 64) -> list[np.ndarray]:
    """Shuffle, cut into buckets of ``bucket_batches`` batches, sort each bucket by length, cut
    batches, shuffle the batch order. Batch mates are random within a length band."""
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    bucket = batch_size * bucket_batches
    for start in range(0, len(order), bucket):
        chunk = order[start:start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def resolve_precision(precision: str, device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# Devices with a fused AdamW kernel. On CPU torch's default AdamW is the per-parameter loop:
# 0.23 CPU-s per step for MiniLM (its 30k x 384 embedding matrix included) against 0.03 fused,
# about a fifth of a batch-32 step.
_FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def _adamw(params: list[dict[str, Any]], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where the device has one (same update rule, one pass per step)."""
    if device.type in _FUSED_ADAMW_DEVICES:
        try:
            return torch.optim.AdamW(params, lr=lr, fused=True)
        except (RuntimeError, ValueError):  # e.g. a parameter dtype the fused kernel lacks
            pass
    return torch.optim.AdamW(params, lr=lr)


def _tokenized_pairs(tok: Any, data: PairData, max_seq_length: int) -> tuple[list, list, np.ndarray]:
    """Token ids of both sides (tokenised once; classification pairs a sentence with itself) and
    each pair's longer length, for length-grouped batches."""
    ids1 = tokenize(tok, data.text1, max_seq_length)
    same = data.text2 is data.text1 or data.text2 == data.text1
    ids2 = ids1 if same else tokenize(tok, data.text2, max_seq_length)
    lengths = np.fromiter((max(len(a), len(b)) for a, b in zip(ids1, ids2)), dtype=np.int64, count=len(ids1))
    return ids1, ids2, lengths


def _param_groups(encoder: Encoder, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weights, none on biases and norms."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0}]


def _zigzag_batch(batch: np.ndarray, ids1: list, ids2: list, pad_id: int, padding_side: str,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[a0, b0, a1, b1, ...]`` token ids and mask, padded to the batch's longest, on ``device``."""
    zigzag = [x for i in batch for x in (ids1[i], ids2[i])]
    return _to_device(*pad_batch(zigzag, pad_id, padding_side), device)


def _free_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Free the AdamW moments now, by reference count: the optimizer sits in a reference cycle (its
    step hooks), so without this they would wait for a full gc.collect(), which costs ~0.1-0.4 s per
    trial in a process holding torch + transformers + pandas."""
    optimizer.zero_grad(set_to_none=True)
    optimizer.state.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class _View:
    """One kind of batch a step trains on: token ids, lengths, the losses it feeds, a batch stream."""

    kind: str                    # "pairs" (zigzag) or "triplets"
    ids: tuple                   # pairs: (ids1, ids2, labels); triplets: (anchor, positive, *negative columns)
    lengths: np.ndarray
    names: Optional[tuple[str, ...]]
    stream: Iterator[np.ndarray] = None  # type: ignore[assignment]
    texts: tuple = ()            # text_ids() of the columns of ``ids`` when a loss reads them, else ()


def _views(data: "PairData | NliTrainData", loss_fn: CombinedLoss, tok: Any, max_len: int) -> list[_View]:
    if isinstance(data, PairData):
        if len(data) < 2:
            raise TunerError(f"training data has {len(data)} pair(s); at least 2 are needed")
        ids1, ids2, lengths = _tokenized_pairs(tok, data, max_len)
        texts = text_ids(data.text1, data.text2) if loss_fn.wants_text_ids else ()
        return [_View("pairs", (ids1, ids2, torch.from_numpy(np.asarray(data.labels, dtype=np.float32))), lengths, None,
                      texts=texts)]
    views = []
    for kind, names in (("pairs", loss_fn.pair_losses), ("triplets", loss_fn.triplet_losses)):
        view = getattr(data, kind)
        if not names:
            continue
        if view is None or len(view) < 2:
            why = data.missing.get(kind) or f"the NLI rows give {len(view or ())} {kind}; at least 2 are needed"
            raise TunerError(f"{'+'.join(names)} train on NLI {kind}, but {why}")
        if kind == "pairs":
            ids1, ids2, lengths = _tokenized_pairs(tok, view, max_len)
            ids: tuple = (ids1, ids2, torch.from_numpy(np.asarray(view.labels, dtype=np.float32)))
        else:
            a, p = tokenize(tok, view.anchor, max_len), tokenize(tok, view.positive, max_len)
            negs = [_tokenized_negatives(tok, column, max_len) for column in view.negatives]
            lengths = np.fromiter((max(len(x), len(y), *(0 if n[i] is None else len(n[i]) for n in negs))
                                   for i, (x, y) in enumerate(zip(a, p))), dtype=np.int64, count=len(a))
            ids = (a, p, *negs)
        columns = (view.text1, view.text2) if kind == "pairs" else (view.anchor, view.positive, *view.negatives)
        views.append(_View(kind, ids, lengths, names, texts=text_ids(*columns) if loss_fn.wants_text_ids else ()))
    return views


def _tokenized_negatives(tok: Any, column: list[Optional[str]], max_len: int) -> list:
    """Token ids of a negative column, None kept where a row has no negative."""
    present = [x for x in column if x is not None]
    it = iter(tokenize(tok, present, max_len) if present else [])
    return [None if x is None else next(it) for x in column]


def _to_device(input_ids: torch.Tensor, mask: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device.type == "cuda":  # pinned host memory: the copy overlaps the previous step's compute
        input_ids, mask = input_ids.pin_memory(), mask.pin_memory()
        return input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
    return input_ids.to(device), mask.to(device)


def _triplet_batch(batch: np.ndarray, ids: tuple, pad_id: int, padding_side: str,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[anchors..., positives..., hard negatives of the rows that have one (column by column)...]``,
    padded, on ``device``."""
    a, p, *negs = ids
    rows = [a[i] for i in batch] + [p[i] for i in batch] + [n[i] for n in negs for i in batch if n[i] is not None]
    return _to_device(*pad_batch(rows, pad_id, padding_side), device)


def _view_loss(view: _View, batch: np.ndarray, encoder: Encoder, loss_fn: CombinedLoss, pad_id: int,
               padding_side: str, autocast_dtype: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """One view's batch: encode it in one forward pass and compute the losses it feeds."""
    device = encoder.device
    if view.kind == "pairs":
        input_ids, mask = _zigzag_batch(batch, view.ids[0], view.ids[1], pad_id, padding_side, device)
        labels = view.ids[2][batch].to(device, non_blocking=device.type == "cuda")
    else:
        input_ids, mask = _triplet_batch(batch, view.ids, pad_id, padding_side, device)
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        embeddings = encoder(input_ids, mask)
    texts = None
    if view.texts:  # one id per encoded row, in the batch's order (zigzag; anchors, positives, hard negatives)
        cols = [t[batch] for t in view.texts]
        rows = np.stack(cols, 1).reshape(-1) if view.kind == "pairs" else np.concatenate([*cols[:2], *(c[c >= 0] for c in cols[2:])])
        texts = torch.from_numpy(rows).to(device)
    if view.kind == "pairs":
        return loss_fn(embeddings.float(), labels, names=view.names, text_ids=texts)
    k, emb = len(batch), embeddings.float()
    return loss_fn.triplets(emb[:k], emb[k:2 * k], emb[2 * k:], text_ids=texts)


def _set_up(encoder: Encoder, config: RunConfig) -> int:
    """The run's pooling and prompt on ``encoder``, LoRA adapters when ``lora_r > 0`` (call after
    seeding: their init is part of the run), gradient checkpointing when asked for; returns how many
    parameters will train."""
    if config.pooling is not None:
        encoder.pooling = config.pooling
    if config.prompt is not None:
        encoder.prompt = config.prompt
    if config.lora_r:
        lora.attach(encoder, config.lora)
    if config.gradient_checkpointing:
        base = encoder.model.get_base_model() if lora.is_lora(encoder.model) else encoder.model
        if not getattr(base, "supports_gradient_checkpointing", False):
            raise TunerError(f"{type(base).__name__} does not support gradient checkpointing; "
                             "set gradient_checkpointing to false")
        # non-reentrant: correct when the inputs need no grad (frozen embeddings under LoRA)
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name for it
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)


def finetune(encoder: Encoder, data: "PairData | NliTrainData", config: RunConfig,
             on_eval: Optional[Callable[[int], None]] = None, progress: bool = True,
             on_step: Optional[Callable[[int, int], None]] = None) -> TrainResult:
    """Fine-tune ``encoder`` in place on ``data`` (pairs, or the two views of NLI rows). ``on_eval(step)``
    is called every ``config.eval_every`` steps (the study uses it to report dev scores and prune);
    ``on_step(step, total_steps)`` after every optimizer step (the study shows where a trial is)."""
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    loss_fn = CombinedLoss.from_config(config)
    seed_everything(config.seed)
    trainable = _set_up(encoder, config)
    rng = np.random.default_rng(config.seed)
    device = encoder.device
    precision = resolve_precision(config.precision, device)
    tok = encoder.tokenizer
    views = _views(data, loss_fn, tok, config.max_seq_length)
    pad_id = pad_id_of(tok)
    padding_side = getattr(tok, "padding_side", "right")

    def batch_stream(lengths: np.ndarray) -> Iterator[np.ndarray]:
        while True:  # epoch after epoch, drawn only when needed
            if config.length_grouping:
                yield from length_grouped_batches(lengths, config.batch_size, rng)
            else:
                yield from random_batches(len(lengths), config.batch_size, rng)

    for view in views:
        view.stream = batch_stream(view.lengths)
    steps_per_epoch = math.ceil(max(len(v.lengths) for v in views) / config.batch_size)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer = _adamw(_param_groups(encoder, config.weight_decay), config.lr, device)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    losses: list[float] = []
    parts: dict[str, list[float]] = {k: [] for k in loss_fn.active}
    step, examples = 0, 0
    encoder.train()
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc="fine-tune", unit="step", disable=not progress, leave=False)
    try:
        while step < total_steps:
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for view in views:
                batch = next(view.stream)
                loss, loss_parts = _view_loss(view, batch, encoder, loss_fn, pad_id, padding_side, autocast_dtype)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}")
                scaler.scale(loss).backward()  # gradients of the views add up: the weighted sum
                step_loss += float(loss.detach())
                examples += len(batch)
                for name, v in loss_parts.items():
                    parts[name].append(float(v))
            scaler.unscale_(optimizer)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(encoder.parameters(), config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            losses.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if on_step is not None:
                on_step(step, total_steps)
            if on_eval is not None and config.eval_every and step % config.eval_every == 0 and step < total_steps:
                encoder.eval()
                on_eval(step)
                encoder.train()
    finally:
        bar.close()
        encoder.eval()
        _free_optimizer(optimizer, device)
        del optimizer, scheduler, scaler
    wall = time.perf_counter() - start
    return TrainResult(steps=step, examples=examples, wall_s=wall, pairs_per_s=examples / max(wall, 1e-9),
                       losses=losses, loss_parts=parts, precision=precision, trainable_params=trainable)
