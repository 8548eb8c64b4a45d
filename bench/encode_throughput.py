"""Encoding throughput: tuner.evaluation.encode vs SentenceTransformer.encode, same batch size.

Sentences: the unique STS-B test sentences (2,551; what ``evaluate_sts`` encodes), or
``--sentences train`` for the 11.5k STS-B train sentences (with their duplicates, as given).
Both sides get the same list, the same batch size and the same max_seq_length. Ours: the
token-id cache is cleared before every timed run (``--warm-cache`` keeps it), so tokenisation
is inside the timing on both sides.

Same scores: STS-B test Spearman of cosine similarity from each side's embeddings must agree
within 1e-4, and the L2-normalised embeddings must be allclose (atol 1e-4).

    python bench/encode_throughput.py                 # batch 64, 3 interleaved repeats
    python bench/encode_throughput.py --smoke
"""
from __future__ import annotations

import argparse

from common import (Clock, emit, environment, interleaved, load_st, median, model_path, note, ratio_fields, rates,
                    set_threads, stsb, stsb_test_sentences)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def spearman_of(emb: np.ndarray, sentences: list[str], test) -> float:
    from tuner.evaluation import cosine_rows, sts_correlations

    index = {t: i for i, t in enumerate(sentences)}
    a = emb[[index[t] for t in test["sentence1"].astype(str)]]
    b = emb[[index[t] for t in test["sentence2"].astype(str)]]
    return sts_correlations(cosine_rows(a, b), test["score"].to_numpy(dtype=np.float64))["spearman"]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--sentences", choices=["test", "train"], default="test")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences (scores then skipped)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warm-cache", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="first 256 test sentences, 2 repeats")
    args = ap.parse_args(argv)
    if args.smoke:
        args.limit, args.repeats = 256, 2
    set_threads(args.threads)

    from tuner.evaluation import encode
    from tuner.models._encoder import load_encoder
    from tuner.models._tokenize import clear_cache

    path = model_path(args.model)
    sentences, test = stsb_test_sentences()
    if args.sentences == "train":
        tr = stsb().splits["train"]
        sentences = tr["sentence1"].astype(str).tolist() + tr["sentence2"].astype(str).tolist()
    if args.limit:
        sentences = sentences[:args.limit]
    st = load_st(path, device=args.device, max_seq_length=args.max_seq_length)
    enc = load_encoder(path, device=args.device)

    def st_run(texts=sentences):
        with Clock() as clock:
            out = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return {"wall_s": clock.wall, "cpu_s": clock.cpu, "emb": out}

    def ours_run(texts=sentences):
        if not args.warm_cache:
            clear_cache()
        with Clock() as clock:
            out = encode(enc, texts, batch_size=args.batch_size, max_seq_length=args.max_seq_length)
        return {"wall_s": clock.wall, "cpu_s": clock.cpu, "emb": out}

    seconds, outputs = interleaved({"st": st_run, "ours": ours_run}, args.repeats,
                                   warmups={"st": lambda: st_run(sentences[:128]),
                                            "ours": lambda: ours_run(sentences[:128])}, label="encode")
    n = len(sentences)
    rate = {k: rates(outputs[k], n) for k in outputs}
    st_emb, ours_emb = np.asarray(outputs["st"][0]["emb"]), outputs["ours"][0]["emb"]
    max_diff = float(np.abs(unit(st_emb) - unit(ours_emb)).max())
    scores = {}
    if not args.limit and args.sentences == "test":
        scores = {"spearman_st": spearman_of(st_emb, sentences, test),
                  "spearman_ours": spearman_of(ours_emb, sentences, test)}
        scores["spearman_abs_diff"] = abs(scores["spearman_st"] - scores["spearman_ours"])
        scores["same_scores"] = scores["spearman_abs_diff"] <= 1e-4 and max_diff <= 1e-4
    common = {"model": args.model, "batch_size": args.batch_size, "sentences": n, "which": args.sentences,
              "max_seq_length": args.max_seq_length, "device": args.device, "threads": torch.get_num_threads(),
              "warm_cache": args.warm_cache}
    for side in ("st", "ours"):
        emit(bench="encode_throughput", side=side, sentences_per_s_runs=rate[side]["wall"],
             sentences_per_s_median=median(rate[side]["wall"]), sentences_per_cpu_s_runs=rate[side]["cpu"],
             sentences_per_cpu_s_median=median(rate[side]["cpu"]), **common)
    fields = ratio_fields(rate["ours"], rate["st"])
    emit(bench="encode_throughput", side="ratio", **fields, max_abs_diff_unit_embeddings=max_diff, **scores,
         repeats=args.repeats, env=environment(), **common)
    note(f"encode: ours {median(rate['ours']['wall']):.1f}/s, st {median(rate['st']['wall']):.1f}/s, "
         f"ratio wall {fields['ratio_wall']:.2f}x cpu {fields['ratio_cpu']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
