"""SentEval classification evaluation (MR, CR, MPQA, SUBJ): seconds, and the ratio against
encoding one sentence at a time as the seed notebook did.

Per set, ours:
  * encode: ``tuner.evaluate.encode`` of every sentence of the set (batch 64, length-sorted,
    padded per batch; token-id cache cleared first, so tokenisation is included);
  * LR seed: the seed protocol (``protocol_splits(ds, "seed")``: fit
    ``LogisticRegression(max_iter=10000)`` on train, accuracy on test) -- ``logistic_regression_seed``;
  * LR senteval: SentEval's 10-fold CV with inner 5-fold choice of C -- ``logistic_regression_senteval``
    (the expensive one: 350 fits per set; ``--protocols seed`` skips it).

The seed's way: each sentence tokenised and run through the model alone (batch of 1, no padding,
``torch.no_grad``). To keep the run bounded it is timed on a seeded sample of
``--one-at-a-time-sample`` sentences in all, stratified by set, and each set's mean seconds per
sentence is multiplied by its size: the seed numbers are an EXTRAPOLATION (said in the output).
Its LR time is the same as ours (same classifier on the same embeddings).

    python bench/senteval_eval.py                      # all four sets, both protocols (long: SentEval CV)
    python bench/senteval_eval.py --protocols seed --limit 3000   # 3,000-sentence sample per set
    python bench/senteval_eval.py --protocols seed     # skip SentEval's CV
    python bench/senteval_eval.py --smoke              # 300 sentences per set, seed protocol
"""
from __future__ import annotations

import argparse
import time

from common import Clock, emit, environment, median, model_path, set_threads

import numpy as np  # noqa: E402
import torch  # noqa: E402

SETS = ("mr", "cr", "mpqa", "subj")


def one_at_a_time(enc, texts: list[str], max_seq_length: int) -> Clock:
    """Embed ``texts`` one by one, the seed's way; returns the wall/CPU clock."""
    tok = enc.tokenizer
    enc.eval()
    with Clock() as clock, torch.no_grad():
        for text in texts:
            batch = tok(text, truncation=True, max_length=max_seq_length, return_tensors="pt")
            enc(batch["input_ids"].to(enc.device), batch["attention_mask"].to(enc.device)).cpu().numpy()
    return clock


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--protocols", default="seed,senteval")
    ap.add_argument("--one-at-a-time-sample", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved repeats of the batched encode and the one-at-a-time sample (medians); LR runs once")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of N rows per set (smoke tests)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.limit, args.protocols, args.one_at_a_time_sample, args.repeats = 300, "seed", 40, 1
    set_threads(args.threads)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]

    from tuner.data import load_dataset, protocol_splits
    from tuner.evaluate import encode, logistic_regression_seed, logistic_regression_senteval
    from tuner.models import load_encoder
    from tuner.tokenize import clear_cache

    enc = load_encoder(model_path(args.model), device=args.device)
    encode(enc, ["warm up"] * 8, batch_size=8)
    frames = {}
    for name in args.sets.split(","):
        ds = load_dataset(name)
        frame = ds.splits.get("all", next(iter(ds.splits.values())))
        if args.limit:
            keep = np.sort(np.random.default_rng(0).permutation(len(frame))[:args.limit])
            frame = frame.iloc[keep].reset_index(drop=True)
        frames[name] = (ds, frame)
    n_all = sum(len(f) for _, f in frames.values())
    rows = []
    one_wall = one_cpu = 0.0
    sampled = 0
    for name, (ds, frame) in frames.items():
        texts = frame["sentence"].astype(str).tolist()
        labels = frame["label"].to_numpy()
        # one-at-a-time on a sample stratified by set (each set's share of --one-at-a-time-sample
        # is its share of the sentences; at least 20), extrapolated per set: sentence lengths
        # differ a lot between sets (MPQA holds short phrases, SUBJ long sentences)
        k = min(len(texts), max(20, round(args.one_at_a_time_sample * len(texts) / n_all)))
        sample = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:k]]
        batched, single, emb = [], [], None
        for r in range(args.repeats):  # interleaved, order alternating
            for what in (("batched", "single") if r % 2 == 0 else ("single", "batched")):
                if what == "batched":
                    clear_cache()
                    with Clock() as clock:
                        out = encode(enc, texts, batch_size=args.batch_size, max_seq_length=args.max_seq_length)
                    emb = out if emb is None else emb
                    batched.append(clock)
                else:
                    single.append(one_at_a_time(enc, sample, args.max_seq_length))
        encode_s, encode_cpu = median([c.wall for c in batched]), median([c.cpu for c in batched])
        one_s, one_c = median([c.wall for c in single]), median([c.cpu for c in single])
        one_wall, one_cpu, sampled = one_wall + one_s, one_cpu + one_c, sampled + k
        row = {"set": name, "sentences": len(texts), "encode_s": encode_s, "encode_cpu_s": encode_cpu,
               "encode_s_runs": [c.wall for c in batched], "one_at_a_time_sample": k,
               "seed_encode_s_extrapolated": one_s / k * len(texts),
               "seed_encode_cpu_s_extrapolated": one_c / k * len(texts),
               "encode_ratio_seed_over_ours": one_s / k * len(texts) / encode_s,
               "encode_ratio_seed_over_ours_cpu": one_c / k * len(texts) / encode_cpu,
               "encode_ratio_runs_cpu": [(o.cpu / k * len(texts)) / b.cpu for o, b in zip(single, batched)]}
        if "seed" in protocols:
            if args.limit:
                from sklearn.model_selection import train_test_split
                tr, te = train_test_split(np.arange(len(texts)), test_size=0.3, random_state=42)
                train_x, train_y, test_x, test_y = emb[tr], labels[tr], emb[te], labels[te]
            else:
                parts = protocol_splits(ds, "seed", seed=42)
                index = {t: i for i, t in enumerate(texts)}
                pick = lambda f: emb[[index[t] for t in f["sentence"].astype(str)]]  # noqa: E731
                train_x, train_y = pick(parts["train"]), parts["train"]["label"].to_numpy()
                test_x, test_y = pick(parts["test"]), parts["test"]["label"].to_numpy()
            start = time.perf_counter()
            row["accuracy_seed"] = logistic_regression_seed(train_x, train_y, test_x, test_y)
            row["lr_seed_s"] = time.perf_counter() - start
            row["seed_protocol_total_s_ours"] = row["encode_s"] + row["lr_seed_s"]
            row["seed_protocol_total_s_seed_way"] = row["seed_encode_s_extrapolated"] + row["lr_seed_s"]
            row["seed_protocol_ratio"] = row["seed_protocol_total_s_seed_way"] / row["seed_protocol_total_s_ours"]
        if "senteval" in protocols:
            start = time.perf_counter()
            row["accuracy_senteval"] = logistic_regression_senteval(emb, labels)
            row["lr_senteval_s"] = time.perf_counter() - start
        emit(bench="senteval_eval", **row)
        rows.append(row)

    total = {k: sum(r.get(k, 0.0) for r in rows) for k in
             ("sentences", "encode_s", "encode_cpu_s", "lr_seed_s", "lr_senteval_s", "seed_encode_s_extrapolated",
              "seed_encode_cpu_s_extrapolated")}
    ours_total = total["encode_s"] + total["lr_seed_s"]
    seed_total = total["seed_encode_s_extrapolated"] + total["lr_seed_s"]
    emit(bench="senteval_eval", set="all", **total,
         ours_encode_plus_lr_seed_s=ours_total, seed_way_encode_plus_lr_seed_s=seed_total,
         ratio_seed_way_over_ours=seed_total / ours_total,
         encode_ratio_seed_way_over_ours=total["seed_encode_s_extrapolated"] / total["encode_s"],
         encode_ratio_seed_way_over_ours_cpu=total["seed_encode_cpu_s_extrapolated"] / total["encode_cpu_s"],
         ours_encode_plus_lr_senteval_s=total["encode_s"] + total["lr_senteval_s"] if "senteval" in protocols else None,
         one_at_a_time={"sample": sampled, "seconds": one_wall, "cpu_seconds": one_cpu,
                        "note": "seed-way encode seconds are EXTRAPOLATED from this sample, per set"},
         batch_size=args.batch_size, protocols=protocols, repeats=args.repeats, limit=args.limit,
         threads=torch.get_num_threads(), env=environment())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
