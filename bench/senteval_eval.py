"""SentEval classification evaluation (MR, CR, MPQA, SUBJ): seconds, and the ratio against
encoding one sentence at a time as the seed notebook did.

Per set, ours:
  * encode: ``tuner.evaluation.encode`` of every sentence of the set (batch 64, length-sorted,
    padded per batch; token-id cache cleared first, so tokenisation is included);
  * LR seed: the seed protocol (``protocol_splits(ds, "seed")``: fit
    ``LogisticRegression(max_iter=10000)`` on train, accuracy on test) -- ``logistic_regression_seed``;
  * LR senteval: SentEval's protocol exactly (outer 10 folds, inner 10 folds, C in 2^-2..2^3) --
    ``senteval_cv`` (610 logistic-regression optima per set; ``--protocols seed`` skips it).

``--cv-only`` times only the SentEval cross-validation, on embeddings encoded once (and cached as
.npy under ``--cache`` when given), for ``--variants``:
  * ``exact``: ``tuner.evaluation.senteval_cv`` (warm-started Newton path; ``--n-jobs`` outer folds
    in parallel, BLAS held to one thread per fold);
  * ``before``: the variant this replaced (GridSearchCV, inner 5 folds, C in 2^-2..2^4,
    ``LogisticRegression(max_iter=2000)``), one BLAS thread;
  * ``literal``: SentEval's own loop as it runs with today's scikit-learn (``LogisticRegression(C,
    random_state=1111)`` with sklearn's defaults: lbfgs, tol 1e-4, max_iter 100; same order and
    folds as ``exact``): shows how far lbfgs' early stop moves SentEval's figure from the optimum's.
Each row has wall seconds, this process's CPU seconds (the steadier figure on a shared machine)
and the 1-minute load average at the end.

    python bench/senteval_eval.py --cv-only --sets cr,mr --variants exact --cache /tmp/emb
    python bench/senteval_eval.py --cv-only --sets cr --variants exact,before,literal --cache /tmp/emb

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


def previous_variant(x: np.ndarray, y: np.ndarray) -> float:
    """The pre-issue-13 'senteval' protocol, kept here only to time it: inner 5-fold GridSearchCV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    scores = []
    for tr, te in StratifiedKFold(n_splits=10, shuffle=True, random_state=1111).split(x, y):
        search = GridSearchCV(LogisticRegression(max_iter=2000, random_state=1111), {"C": [2.0**t for t in range(-2, 5)]},
                              cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=1111), scoring="accuracy")
        search.fit(x[tr], y[tr])
        scores.append(search.score(x[te], y[te]))
    return float(np.mean(scores))


def senteval_literal(x: np.ndarray, y: np.ndarray, sentences: list[str]) -> dict:
    """SentEval's InnerKFoldClassifier loop with sklearn's default LogisticRegression (lbfgs, tol 1e-4,
    max_iter 100), i.e. what SentEval computes today; same row order, folds, grid and rounding."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from tuner.evaluation import SENTEVAL_CS, senteval_order

    order = senteval_order(sentences, y)
    x, y = x[order], y[order]
    dev, test, chosen, unconverged = [], [], [], 0
    for tr, te in StratifiedKFold(n_splits=10, shuffle=True, random_state=1111).split(x, y):
        scores = []
        for c in SENTEVAL_CS:
            accs = []
            for a, b in StratifiedKFold(n_splits=10, shuffle=True, random_state=1111).split(x[tr], y[tr]):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    clf = LogisticRegression(C=c, random_state=1111).fit(x[tr][a], y[tr][a])
                unconverged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
                accs.append(clf.score(x[tr][b], y[tr][b]))
            scores.append(round(100 * float(np.mean(accs)), 2))
        best = int(np.argmax(scores))
        chosen.append(SENTEVAL_CS[best])
        dev.append(scores[best])
        clf = LogisticRegression(C=SENTEVAL_CS[best], random_state=1111).fit(x[tr], y[tr])
        test.append(round(100 * clf.score(x[te], y[te]), 2))
    return {"acc": round(float(np.mean(test)), 2), "devacc": round(float(np.mean(dev)), 2), "C": chosen,
            "fold_acc": test, "unconverged_fits": unconverged}


def cv_only(args) -> int:
    """``--cv-only``: time SentEval's cross-validation variants on embeddings encoded once."""
    import os
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    from tuner.data import load_dataset
    from tuner.evaluation import encode, senteval_cv
    from tuner.models._encoder import load_encoder

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    enc = None
    for name in args.sets.split(","):
        frame = load_dataset(name).official()
        texts = frame["sentence"].astype(str).tolist()
        labels = frame["label"].to_numpy()
        cached = Path(args.cache) / f"{name}.npy" if args.cache else None
        if cached is not None and cached.is_file():
            emb = np.load(cached)
        else:
            if enc is None:
                enc = load_encoder(model_path(args.model), device=args.device)
            emb = encode(enc, texts, batch_size=args.batch_size, max_seq_length=args.max_seq_length)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, emb)
        if len(emb) != len(texts):
            raise SystemExit(f"error: cached embeddings {cached} have {len(emb)} rows, {name} has {len(texts)}")
        for variant in variants:
            with Clock() as clock:
                if variant == "exact":
                    out = senteval_cv(emb, labels, sentences=texts, n_jobs=args.n_jobs)
                    result = {k: out[k] for k in ("acc", "devacc", "C", "fold_acc")}
                elif variant == "before":
                    with threadpool_limits(limits=1, user_api="blas"):
                        result = {"acc": round(100 * previous_variant(emb, labels), 2)}
                elif variant == "literal":
                    with threadpool_limits(limits=1, user_api="blas"):
                        result = senteval_literal(emb, labels, texts)
                else:
                    raise SystemExit(f"error: unknown variant '{variant}'; use exact, before, literal")
            emit(bench="senteval_cv", set=name, sentences=len(texts), variant=variant, wall_s=clock.wall,
                 cpu_s=clock.cpu, n_jobs=args.n_jobs if variant == "exact" else 1,
                 cpu_note="this process only" if variant == "exact" and args.n_jobs != 1 else "all threads",
                 load_1min=os.getloadavg()[0], **result)
    return 0


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
    ap.add_argument("--cv-only", action="store_true", help="time only SentEval's CV (see --variants)")
    ap.add_argument("--variants", default="exact", help="with --cv-only: exact, before, literal (comma-separated)")
    ap.add_argument("--n-jobs", type=int, default=1, help="outer folds in parallel for the exact CV")
    ap.add_argument("--cache", default=None, help="with --cv-only: folder for the embeddings (.npy), reused")
    args = ap.parse_args(argv)
    if args.cv_only:
        set_threads(args.threads)
        return cv_only(args)
    if args.smoke:
        args.limit, args.protocols, args.one_at_a_time_sample, args.repeats = 300, "seed", 40, 1
    set_threads(args.threads)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]

    from tuner.data import load_dataset, protocol_splits
    from tuner.evaluation import encode, logistic_regression_seed, senteval_cv
    from tuner.models._encoder import load_encoder
    from tuner.models._tokenize import clear_cache

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
            row["accuracy_senteval"] = senteval_cv(emb, labels, sentences=texts, n_jobs=args.n_jobs)["accuracy"]
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
