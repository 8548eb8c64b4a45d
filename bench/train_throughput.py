"""Training throughput: tuner.engine._train.finetune vs a plain sentence-transformers loop.

Same model (same weights), same data (STS-B train pairs), same batch size, same number of steps,
same loss (CoSENT, scale 20), same optimiser work per step (AdamW, linear warmup/decay, gradient
clipping at 1.0), same max_seq_length.

Data: by default both sides get the identical seeded sample of steps x batch STS-B train pairs
and run one epoch over it (ST in random batches, ours length-grouped). That is harsher on length
grouping than a real trial, which groups within buckets of 64 batches of the whole set.
``--epoch-prefix`` instead lets each side run the first ``--steps`` batches of an epoch over all
of STS-B train (5,749 pairs) in its own batch order; the pairs then differ between sides, so
compare ``ratio_real_tokens_per_s`` (real, non-pad tokens per second), not pairs/s.

* ``st``:   per step ``model.preprocess`` each column (padding to the column's longest), forward
            each column, ``CoSENTLoss``, backward, clip, AdamW step (random batches).
* ``ours``: ``tuner.engine._train.finetune`` with ``weights={"cosent": 1}``: the token-id cache is cleared
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

from common import (Clock, batch_token_stats, emit, environment, interleaved, load_st, median, model_path, note,
                    ratio_fields, rates, set_threads, st_train_loop, stsb_train_pairs)

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
    ap.add_argument("--st-fused", action="store_true",
                    help="also time ST's loop with AdamW(fused=True) (ST's trainer default), side 'st_fused'")
    ap.add_argument("--epoch-prefix", action="store_true",
                    help="each side runs the first --steps batches of an epoch over all of STS-B train")
    ap.add_argument("--smoke", action="store_true", help="tiny run: batch 8, 2 steps, 2 repeats")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.repeats = 8, 2, 2
    set_threads(args.threads)

    from tuner.models._encoder import load_encoder
    from tuner.models._tokenize import clear_cache
    from tuner.config import RunConfig
    from tuner.engine._train import finetune

    path = model_path(args.model)
    device = torch.device(args.device)
    pairs = stsb_train_pairs(None if args.epoch_prefix else args.steps * args.batch_size, seed=args.seed)
    warm_pairs = stsb_train_pairs(2 * args.batch_size, seed=args.seed + 1)
    autocast = torch.bfloat16 if args.precision == "bf16" else None
    st_base = load_st(path, device=str(device), max_seq_length=args.max_seq_length)
    load_encoder(path, device="cpu")  # fills tuner's base-weights cache outside the timing

    def st_run(data=pairs, steps=args.steps, fused=False):
        model = copy.deepcopy(st_base)
        out = st_train_loop(model, data, args.batch_size, steps, seed=args.seed, autocast_dtype=autocast,
                            fused_adamw=fused)
        del model
        return out

    def ours_run(data=pairs, steps=args.steps):
        enc = load_encoder(path, device=device)
        if not args.warm_cache:
            clear_cache()
        config = RunConfig(weights={"cosent": 1}, batch_size=args.batch_size, max_steps=steps,
                             max_seq_length=args.max_seq_length, seed=args.seed,
                             precision="bf16" if autocast is not None else "fp32")
        with Clock() as clock:
            res = finetune(enc, data, config, progress=False)
        del enc
        return {"wall_s": clock.wall, "cpu_s": clock.cpu, "pairs": res.examples, "final_loss": res.losses[-1]}

    runs = {"st": st_run, "ours": ours_run}
    warmups = {"st": lambda: st_run(warm_pairs, 2), "ours": lambda: ours_run(warm_pairs, 2)}
    if args.st_fused:
        runs["st_fused"] = lambda: st_run(fused=True)
    seconds, outputs = interleaved(runs, args.repeats, warmups=warmups, label="train")
    rate = {k: rates(outputs[k], "pairs") for k in runs}
    tok = load_encoder(path, device="cpu").tokenizer
    ours_tokens = batch_token_stats(pairs, tok, args.batch_size, args.steps, args.max_seq_length, args.seed, "ours")
    st_tokens = {"real_tokens": outputs["st"][0]["real_tokens"], "padded_tokens": outputs["st"][0]["padded_tokens"]}
    tokens = {k: ours_tokens if k == "ours" else st_tokens for k in runs}
    common = {"model": args.model, "batch_size": args.batch_size, "steps": args.steps,
              "data": "STS-B train, first steps of an epoch" if args.epoch_prefix else "same sample of STS-B train pairs",
              "max_seq_length": args.max_seq_length, "precision": args.precision, "device": str(device),
              "threads": torch.get_num_threads(), "warm_cache": args.warm_cache}
    for name in runs:
        toks = tokens[name]
        emit(bench="train_throughput", side=name, pairs_per_run=outputs[name][0]["pairs"],
             pairs_per_s_runs=rate[name]["wall"], pairs_per_s_median=median(rate[name]["wall"]),
             pairs_per_cpu_s_runs=rate[name]["cpu"], pairs_per_cpu_s_median=median(rate[name]["cpu"]),
             padded_over_real_tokens=toks["padded_tokens"] / max(toks["real_tokens"], 1), **toks, **common)
    # real (non-pad) tokens per second: the fair rate when the two sides saw different pairs (--epoch-prefix)
    real_rate = {k: {c: [r / outputs[k][0]["pairs"] * tokens[k]["real_tokens"] for r in v]
                     for c, v in rate[k].items()} for k in runs}
    fields = ratio_fields(rate["ours"], rate["st"])
    fields["ratio_real_tokens_per_s_wall"] = ratio_fields(real_rate["ours"], real_rate["st"])["ratio_wall"]
    fields["ratio_real_tokens_per_s_cpu"] = ratio_fields(real_rate["ours"], real_rate["st"])["ratio_cpu"]
    if "st_fused" in runs:
        fields.update(ratio_fields(rate["ours"], rate["st_fused"], "_vs_st_fused"))
    emit(bench="train_throughput", side="ratio", **fields, repeats=args.repeats, env=environment(), **common)
    note(f"train: ours {median(rate['ours']['wall']):.1f} pairs/s, st {median(rate['st']['wall']):.1f} pairs/s, "
         f"ratio wall {fields['ratio_wall']:.2f}x cpu {fields['ratio_cpu']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
