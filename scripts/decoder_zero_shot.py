"""Zero-shot STS scores of a decoder LLM (default: SmolLM2-135M-Instruct, ``smollm2-135m``) with
the three ways of reading a sentence embedding out of a decoder (issue #17):

* ``avg``: mean of the last hidden states over the sentence's tokens, no prompt;
* ``last``: the hidden state of the last real token, no prompt;
* ``last+prompteol``: the last token of PromptEOL's prompt
  ``This sentence : "{text}" means in one word:"`` (Jiang et al. 2023), i.e. the state that
  predicts the one-word summary.

Each is ``tuner.engine._run.evaluate_model`` on the sets' full official test files (STS-B test 1,379
pairs, SICK-R test 4,927), Spearman of cosine similarity, sequences cut at ``--max-seq-length``
tokens (the sentence is cut, never the prompt). The model is loaded once; the result is written
after every (variant, set), so a stopped run keeps what it finished (``--resume`` skips those).

    nice -n 10 python scripts/decoder_zero_shot.py        # -> docs/results/smollm2-zero-shot.json
    python scripts/decoder_zero_shot.py --limit 100 --out /tmp/z.json
    python scripts/decoder_zero_shot.py --split dev --datasets stsb --variants last+prompteol \
        --max-seq-length 64 --out docs/results/sts-lora-cpu/zero_shot_dev.json    # the LoRA study's "before"
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional

from tuner.models._decoder import PROMPTEOL

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "results" / "smollm2-zero-shot.json"
VARIANTS = {"avg": ("avg", ""), "last": ("last", ""), "last+prompteol": ("last", PROMPTEOL)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--datasets", default="stsb,sickr")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--split", default="test", choices=("test", "dev"),
                    help="test: the official test files (default); dev: the official dev split (STS-B, SICK-R)")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each file")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--resume", action="store_true", help="keep the results already in --out")
    args = ap.parse_args(argv)

    import torch

    from tuner import load_encoder
    from tuner.data import load_dataset
    from tuner.engine._run import evaluate_model

    out = Path(args.out)
    record = json.loads(out.read_text()) if args.resume and out.is_file() else {}
    record.update({"model": args.model, "max_seq_length": args.max_seq_length, "limit": args.limit,
                   "split": "official test file" if args.split == "test" else "official dev split",
                   "metric": "spearman of cosine similarity (x1)",
                   "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "prompts": {name: prompt or None for name, (_, prompt) in VARIANTS.items()}})
    results = record.setdefault("results", {})
    start = time.perf_counter()
    encoder = load_encoder(args.model, device="cpu")
    record["load_s"] = round(time.perf_counter() - start, 1)
    for variant in args.variants.split(","):
        pooling, prompt = VARIANTS[variant]
        for name in args.datasets.split(","):
            if name in results.get(variant, {}):
                continue
            ds = load_dataset(name, data_dir=args.data_dir)
            frame = ds.official() if args.split == "test" else ds.splits["dev"]
            spec = frame.head(args.limit).reset_index(drop=True) if args.limit else name
            t0 = time.perf_counter()
            table = evaluate_model(encoder, [spec] if args.limit else spec, pooling=pooling, prompt=prompt,
                                   split="test" if args.limit else args.split,
                                   data_dir=args.data_dir, batch_size=args.batch_size,
                                   max_seq_length=args.max_seq_length)
            row = table.iloc[0]
            results.setdefault(variant, {})[name] = {"spearman": float(row["score"]), "n": int(row["n"]),
                                                     "seconds": round(time.perf_counter() - t0, 1)}
            print(f"{variant:>16} {name:>6} spearman {100 * row['score']:.2f} (n={int(row['n'])})", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1) + "\n")
            out.with_suffix(".md").write_text(markdown(record))
    out.with_suffix(".md").write_text(markdown(record))
    return 0


def markdown(record: dict) -> str:
    """Variants x sets, Spearman x100 (n pairs in the header)."""
    results = record["results"]
    sets = list(dict.fromkeys(name for per in results.values() for name in per))
    n = {name: next(per[name]["n"] for per in results.values() if name in per) for name in sets}
    split = "dev" if "dev" in record.get("split", "") else "test"
    lines = ["| reading | prompt | " + " | ".join(f"{name} {split} (n={n[name]:,})" for name in sets) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in sets) + " |"]
    for variant, per in results.items():
        prompt = record["prompts"].get(variant)
        cells = [f"{100 * per[name]['spearman']:.2f}" if name in per else "–" for name in sets]
        lines.append(f"| {variant} | {'`' + prompt + '`' if prompt else 'none'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
