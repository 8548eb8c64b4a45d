"""One-shot GPU check: our training and encoding vs sentence-transformers, MFU and peak memory.

Runs with no network and no downloaded weights: MiniLM-L6-sized and bert-base-sized BERTs are
built from ``BertConfig`` with random weights (seeded), saved once to a temp folder, and loaded
by both sides from there (same weights). Tokenizer: the bundled all-MiniLM-L6-v2 one (the
bert-base-uncased vocabulary) when installed, else a word-level one built on the fly. Data:
STS-B train pairs when ``tuner.data`` finds them, else synthetic sentences with STS-B's length
profile (the ``data`` field of the first line says which).

For each model, batch size (32, 128) and precision (fp32, bf16 autocast):
  * ``st``:   a plain loop over a SentenceTransformer (``model.preprocess`` per column, padding to
              the longest, ``CoSENTLoss`` scale 20, AdamW, clipping, linear schedule);
  * ``ours``: ``tuner.engine._train.finetune(weights={"cosent": 1})``, token-id cache warm (as in every
              trial after a worker's first; ``--cold-cache`` clears it before each run);
  each side runs the first ``--steps`` batches of an epoch over the whole set (its own batch
  order, so the pairs differ: ``ratio_real_tokens_per_s`` is the like-for-like ratio);
  ``--repeats`` interleaved runs after a warm-up; medians. Per side: pairs/s,
  peak GPU memory (``max_memory_allocated``), tokens/s counted two ways -- real (non-pad) tokens
  and padded tokens (what the GPU computes) -- and MFU = 6 x N x tokens/s / peak, N = non-embedding
  parameters (attention-score FLOPs, < 1% at these lengths, left out), peak = ``--peak-tflops``
  (default 989: H100 SXM dense bf16; used for fp32 runs too).
Encoding: ``tuner.evaluation.encode`` vs ``SentenceTransformer.encode`` at batch 256, fp32 and bf16.

Prints JSON lines; the last one (``"summary": true``) has the ratios against ST's faster
precision. Under 4 minutes on one H100 (``--time-budget`` skips what would not fit, and says so).

    python bench/gpu_check.py                 # on the GPU machine
    python bench/gpu_check.py --smoke         # tiny models on CPU, < 1 minute
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from common import batch_token_stats, emit, environment, median, note, set_threads, st_train_loop, sync

import numpy as np  # noqa: E402
import torch  # noqa: E402

SIZES = {
    "minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
}


def get_tokenizer(workdir: Path):
    """The bundled MiniLM tokenizer (bert-base-uncased vocab), else a word-level one."""
    from transformers import AutoTokenizer, BertTokenizerFast

    from tuner.models._encoder import bundled_model_path

    path = bundled_model_path()
    if path is not None:
        return AutoTokenizer.from_pretrained(str(path)), "bundled all-MiniLM-L6-v2 tokenizer"
    words = sorted(set(_WORDS))
    vocab = workdir / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True), "word-level tokenizer"


_WORDS = ("a man is playing the guitar woman cutting an onion dog runs in park cat sleeps on sofa child eats "
          "apple red car drives fast slow train arrives late good bad movie great terrible film plot actors "
          "boring funny story phone battery works well poorly screen bright dark people are walking down street "
          "two women sitting at table with food and drinks plane taking off from airport runway").split()


def get_pairs(n_synthetic: int = 5749):
    """STS-B train pairs if the data is found, else synthetic pairs with a similar length profile."""
    from tuner.engine._train import PairData

    try:
        from common import stsb_train_pairs

        return stsb_train_pairs(), "STS-B train"
    except Exception as exc:  # noqa: BLE001 - no data on this machine
        note(f"no STS-B data ({str(exc).splitlines()[0][:120]}); using synthetic sentences")
    rng = np.random.default_rng(0)

    def sentence() -> str:
        n = int(np.clip(rng.lognormal(2.2, 0.45), 3, 60))  # ~10 words, long tail, like STS-B
        return " ".join(rng.choice(_WORDS, n))

    return PairData([sentence() for _ in range(n_synthetic)], [sentence() for _ in range(n_synthetic)],
                    rng.uniform(0, 1, n_synthetic).astype(np.float32)), "synthetic"


def build_model(name: str, tokenizer, folder: Path, seed: int = 0) -> tuple[Path, int, int]:
    """Random-init BERT of size ``name`` saved (with the tokenizer, avg pooling) to ``folder``."""
    from transformers import BertConfig, BertModel

    from tuner.models._encoder import build_encoder, save_encoder

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=max(len(tokenizer), 30522 if name != "tiny" else len(tokenizer)),
                        max_position_embeddings=512, **SIZES[name])
    model = BertModel(config, add_pooling_layer=False)
    total = sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for p in model.embeddings.parameters())
    save_encoder(build_encoder(model, tokenizer, "avg", name=name), folder, {"max_seq_length": 128})
    return folder, total, total - embed


def mfu_fields(prefix: str, pairs_per_s: float, pairs: int, tokens: dict, n_params: int, peak_tflops: float) -> dict:
    real_per_s = tokens["real_tokens"] / pairs * pairs_per_s
    padded_per_s = tokens["padded_tokens"] / pairs * pairs_per_s
    return {f"{prefix}_real_tokens_per_s": real_per_s, f"{prefix}_padded_tokens_per_s": padded_per_s,
            f"{prefix}_padded_over_real": tokens["padded_tokens"] / max(tokens["real_tokens"], 1),
            f"{prefix}_tflops_padded": 6 * n_params * padded_per_s / 1e12,
            f"{prefix}_mfu_padded_pct": 100 * 6 * n_params * padded_per_s / (peak_tflops * 1e12),
            f"{prefix}_mfu_real_pct": 100 * 6 * n_params * real_per_s / (peak_tflops * 1e12)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm-l6,bert-base")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--encode-batch", type=int, default=256)
    ap.add_argument("--encode-sentences", type=int, default=8192)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense peak for MFU (H100 SXM bf16: 989)")
    ap.add_argument("--time-budget", type=float, default=210.0, help="seconds; later configs are skipped past it")
    ap.add_argument("--cold-cache", action="store_true", help="clear the token-id cache before each of our runs")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, 3 steps, fp32: proves the script runs on CPU")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    t0 = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke:
        args.models, args.batch_sizes, args.steps, args.repeats = "tiny", "8,16", 3, 3
        args.encode_batch, args.encode_sentences = 64, 256
        if device.type == "cpu":
            args.precisions = "fp32"
    precisions = [p for p in args.precisions.split(",") if p]
    if device.type == "cpu" and "bf16" in precisions:
        note("bf16 needs a GPU here (tuner.engine._train uses fp32 on CPU); dropping it")
        precisions = [p for p in precisions if p != "bf16"] or ["fp32"]

    from tuner.evaluation import encode
    from tuner.models._encoder import load_encoder
    from tuner.models._tokenize import clear_cache
    from tuner.config import RunConfig
    from tuner.engine._train import finetune

    try:
        from sentence_transformers import SentenceTransformer
        have_st = True
    except ImportError:
        have_st = False

    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    tokenizer, tok_kind = get_tokenizer(workdir)
    pairs, data_kind = get_pairs()
    emit(check="gpu_check", env=environment(), data=data_kind, tokenizer=tok_kind, sentence_transformers=have_st,
         device=str(device), steps=args.steps, repeats=args.repeats, peak_tflops=args.peak_tflops,
         token_cache="cold" if args.cold_cache else "warm",
         tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None)
    results = []

    def over_budget(what: str) -> bool:
        spent = time.perf_counter() - t0
        if spent > args.time_budget:
            emit(check="gpu_check", skipped=what, reason=f"time budget {args.time_budget:.0f}s spent ({spent:.0f}s)")
            return True
        return False

    for name in args.models.split(","):
        if over_budget(f"model {name}"):
            break
        folder, n_total, n_params = build_model(name, tokenizer, workdir / name)
        st_base = None
        if have_st:
            st_base = SentenceTransformer(str(folder), device=str(device))
            st_base.max_seq_length = args.max_seq_length
        load_encoder(str(folder), device="cpu")  # base weights cached outside the timings
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            ours_tokens = batch_token_stats(pairs, tokenizer, bs, args.steps, args.max_seq_length, 0, "ours")
            for precision in precisions:
                if over_budget(f"{name} batch {bs} {precision}"):
                    break
                autocast = torch.bfloat16 if precision == "bf16" else None
                row = {"check": "train", "model": name, "params": n_total, "non_embedding_params": n_params,
                       "batch_size": bs, "precision": precision}

                def st_run(steps=args.steps):
                    model = copy.deepcopy(st_base)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    out = st_train_loop(model, pairs, bs, steps, seed=0, autocast_dtype=autocast)
                    out["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
                    del model
                    return out

                def ours_run(steps=args.steps):
                    enc = load_encoder(str(folder), device=device)
                    if args.cold_cache:
                        clear_cache()
                    config = RunConfig(weights={"cosent": 1}, batch_size=bs, max_steps=steps,
                                         max_seq_length=args.max_seq_length, seed=0, precision=precision)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    sync(device)
                    start = time.perf_counter()
                    res = finetune(enc, pairs, config, progress=False)
                    sync(device)
                    wall = time.perf_counter() - start
                    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
                    del enc
                    return {"wall_s": wall, "pairs": res.examples, "peak_mem_mb": peak}

                sides = {"ours": ours_run}
                if st_base is not None:
                    sides["st"] = st_run
                for fn in sides.values():
                    fn(3)  # warm-up (kernels, allocator, token cache)
                runs: dict[str, list] = {k: [] for k in sides}
                for r in range(args.repeats):
                    for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                        runs[k].append(sides[k]())
                for k, outs in runs.items():
                    pps = median([o["pairs"] / o["wall_s"] for o in outs])
                    pairs_run = outs[0]["pairs"]
                    tokens = ours_tokens if k == "ours" else {"real_tokens": outs[0]["real_tokens"],
                                                              "padded_tokens": outs[0]["padded_tokens"]}
                    row[f"{k}_pairs_per_s"] = pps
                    row[f"{k}_pairs_per_s_runs"] = [o["pairs"] / o["wall_s"] for o in outs]
                    row[f"{k}_peak_mem_mb"] = max((o["peak_mem_mb"] or 0) for o in outs) or None
                    row.update(mfu_fields(k, pps, pairs_run, tokens, n_params, args.peak_tflops))
                if "st" in runs:
                    row["ratio_ours_over_st"] = row["ours_pairs_per_s"] / row["st_pairs_per_s"]
                    # the two sides ran different pairs (each its first steps of an epoch): real
                    # tokens/s is the like-for-like rate
                    row["ratio_real_tokens_per_s"] = row["ours_real_tokens_per_s"] / row["st_real_tokens_per_s"]
                emit(**row)
                results.append(row)

        if not over_budget(f"{name} encode"):
            texts = list(dict.fromkeys(pairs.text1 + pairs.text2))[:args.encode_sentences]
            for precision in precisions:
                autocast = torch.bfloat16 if precision == "bf16" else None
                enc = load_encoder(str(folder), device=device)

                def ours_enc():
                    return encode(enc, texts, batch_size=args.encode_batch, max_seq_length=args.max_seq_length,
                                  precision=precision)

                def st_enc():
                    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                        out = st_base.encode(texts, batch_size=args.encode_batch, convert_to_tensor=True,
                                             show_progress_bar=False)
                    return out.float().cpu().numpy()  # bf16 under autocast; numpy has no bf16

                sides = {"ours": ours_enc, **({"st": st_enc} if st_base is not None else {})}
                secs: dict[str, list] = {k: [] for k in sides}
                outs: dict[str, np.ndarray] = {}
                for fn in sides.values():
                    fn()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for r in range(args.repeats):
                    for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                        sync(device)
                        start = time.perf_counter()
                        outs[k] = np.asarray(sides[k]())
                        sync(device)
                        secs[k].append(time.perf_counter() - start)
                row = {"check": "encode", "model": name, "batch_size": args.encode_batch, "precision": precision,
                       "sentences": len(texts),
                       "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}
                for k, s in secs.items():
                    row[f"{k}_sentences_per_s"] = len(texts) / median(s)
                if "st" in secs:
                    row["ratio_ours_over_st"] = row["ours_sentences_per_s"] / row["st_sentences_per_s"]
                    a, b = outs["ours"], outs["st"]
                    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
                    row["max_abs_diff_unit_embeddings"] = float(np.abs(unit(a) - unit(b)).max())
                emit(**row)
                results.append(row)
                del enc
        del st_base
        if device.type == "cuda":
            torch.cuda.empty_cache()

    summary = {"check": "gpu_check", "summary": True, "seconds": time.perf_counter() - t0}
    for row in results:
        if row["check"] != "train" or "st_pairs_per_s" not in row:
            continue
        same = [r for r in results if r["check"] == "train" and r["model"] == row["model"]
                and r["batch_size"] == row["batch_size"] and "st_pairs_per_s" in r]
        best_st = max(r["st_pairs_per_s"] for r in same)
        best_ours = max(r["ours_pairs_per_s"] for r in same)
        key = f"{row['model']}_b{row['batch_size']}"
        summary[f"{key}_ours_best_over_st_best"] = best_ours / best_st
        summary[f"{key}_ours_best_over_st_best_real_tokens"] = (
            max(r["ours_real_tokens_per_s"] for r in same) / max(r["st_real_tokens_per_s"] for r in same))
        summary[f"{key}_ours_best_mfu_padded_pct"] = max(r["ours_mfu_padded_pct"] for r in same)
        summary[f"{key}_ours_best_mfu_real_pct"] = max(r["ours_mfu_real_pct"] for r in same)
    emit(**summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
