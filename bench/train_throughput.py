"""Training throughput: tuner.train.finetune vs a plain sentence-transformers loop.

Same model (same weights), same data (STS-B train pairs), same batch size, same number of steps,
same loss (CoSENT, scale 20), same optimiser work per step (AdamW, linear warmup/decay, gradient
clipping at 1.0), same max_seq_length.

Data: by default each side runs the first ``--steps`` batches of an epoch over all of STS-B train
(5,749 pairs), in its own batch order -- what the first steps of a real trial look like.
``--same-pairs`` instead gives both sides the identical seeded sample of steps x batch pairs (one
epoch over it); that is harsher on length grouping, which then only has that sample to group.

* ``st``:   per step ``model.preprocess`` each column (padding to the column's longest), forward
            each column, ``CoSENTLoss``, backward, clip, AdamW step (random batches).
* ``ours``: ``tuner.train.finetune`` with ``weights={"cosent": 1}``: the token-id cache is cleared
  before every timed run (``--warm-cache`` keeps it, as a worker's later trials see it), so
  tokenisation is inside the timing on both sides.

Model copies are made outside the timing. One untimed 2-step warm-up per side, then ``--repeats``
interleaved rounds (order alternating); prints pairs/s per run, medians and the ratio.

    python bench/train_throughput.py                      # MiniLM, batch 32, 8 steps, 3 repeats
    python bench/train_throughput.py --smoke              # seconds: proves it runs
"""
from __future__ import annotations

import argparse
import copy

from common import (batch_token_stats, emit, environment, interleaved, load_st, median, model_path, note,
                    set_threads, st_train_loop, stsb_train_pairs, sync)

import time  # noqa: E402

import torch  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed optimiser steps per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: autocast on both sides (GPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--warm-cache", action="store_true", help="keep tuner's token-id cache between runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--same-pairs", action="store_true",
                    help="both sides train on the same sample of steps x batch pairs")
    ap.add_argument("--smoke", action="store_true", help="tiny run: batch 8, 2 steps, 2 repeats")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.repeats = 8, 2, 2
    set_threads(args.threads)

    from tuner.models import load_encoder
    from tuner.tokenize import clear_cache
    from tuner.train import TrainConfig, finetune

    path = model_path(args.model)
    device = torch.device(args.device)
    pairs = stsb_train_pairs(args.steps * args.batch_size if args.same_pairs else None, seed=args.seed)
    warm_pairs = stsb_train_pairs(2 * args.batch_size, seed=args.seed + 1)
    autocast = torch.bfloat16 if args.precision == "bf16" else None
    st_base = load_st(path, device=str(device), max_seq_length=args.max_seq_length)
    load_encoder(path, device="cpu")  # fills tuner's base-weights cache outside the timing

    def st_run(data=pairs, steps=args.steps):
        model = copy.deepcopy(st_base)
        out = st_train_loop(model, data, args.batch_size, steps, seed=args.seed, autocast_dtype=autocast)
        del model
        return out

    def ours_run(data=pairs, steps=args.steps):
        enc = load_encoder(path, device=device)
        if not args.warm_cache:
            clear_cache()
        config = TrainConfig(weights={"cosent": 1}, batch_size=args.batch_size, max_steps=steps,
                             max_seq_length=args.max_seq_length, seed=args.seed,
                             precision="bf16" if autocast is not None else "fp32")
        sync(device)
        start = time.perf_counter()
        res = finetune(enc, data, config, progress=False)
        sync(device)
        wall = time.perf_counter() - start
        del enc
        return {"wall_s": wall, "pairs": res.examples, "final_loss": res.losses[-1]}

    seconds, outputs = interleaved(
        {"st": st_run, "ours": ours_run}, args.repeats,
        warmups={"st": lambda: st_run(warm_pairs, 2), "ours": lambda: ours_run(warm_pairs, 2)},
        label="train")
    st_pps = [o["pairs"] / s for o, s in zip(outputs["st"], seconds["st"])]
    ours_pps = [o["pairs"] / s for o, s in zip(outputs["ours"], seconds["ours"])]
    tok = load_encoder(path, device="cpu").tokenizer
    ours_tokens = batch_token_stats(pairs, tok, args.batch_size, args.steps, args.max_seq_length, args.seed, "ours")
    st_tokens = {"real_tokens": outputs["st"][0]["real_tokens"], "padded_tokens": outputs["st"][0]["padded_tokens"]}
    common = {"model": args.model, "batch_size": args.batch_size, "steps": args.steps,
              "data": "same-pairs sample" if args.same_pairs else "STS-B train, first steps of an epoch",
              "max_seq_length": args.max_seq_length, "precision": args.precision, "device": str(device),
              "warm_cache": args.warm_cache}
    for name, pps, toks in (("st", st_pps, st_tokens), ("ours", ours_pps, ours_tokens)):
        emit(bench="train_throughput", side=name, pairs_per_run=outputs[name][0]["pairs"], pairs_per_s_runs=pps, pairs_per_s_median=median(pps),
             padded_over_real_tokens=toks["padded_tokens"] / max(toks["real_tokens"], 1), **toks, **common)
    emit(bench="train_throughput", side="ratio", ratio_ours_over_st=median(ours_pps) / median(st_pps),
         paired_ratios=[o / t for o, t in zip(ours_pps, st_pps)],
         median_paired_ratio=median([o / t for o, t in zip(ours_pps, st_pps)]),
         repeats=args.repeats, env=environment(), **common)
    note(f"train: ours {median(ours_pps):.1f} pairs/s, st {median(st_pps):.1f} pairs/s, "
         f"ratio {median(ours_pps) / median(st_pps):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
