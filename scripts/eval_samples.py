"""How representative the dev/test samples of the shipped studies are, old rule against new.

For STS-B and SICK-R (standard splits) and the sample sizes the shipped studies use, the
model-free word-overlap figure (:func:`tuner.data.sampling.representativeness`: Spearman x100 of
the word-set Jaccard similarity with the gold scores) on: the full file; the old sample (a prefix
of one seeded permutation, ``df.sample(n, random_state=42)``, used before 2026-12-05); the new
stratified sample the studies now score; and the spread (mean, std) of the figure over
``--draws`` other seeds for the stratified and for a plain random sample of the same size.

    python scripts/eval_samples.py            # writes docs/results/eval-samples.{json,md}
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tuner.data import load_dataset, protocol_splits
from tuner.data.sampling import SAMPLE_RULE, eval_sample, representativeness
from tuner.engine._run import SPLIT_SEED
from tuner.jsonsafe import dumps

ROOT = Path(__file__).resolve().parents[1]
SIZES = (150, 200, 400, 600, 750)


def figure(frame) -> float:
    return representativeness(frame, frame)["full"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="stsb,sickr")
    ap.add_argument("--draws", type=int, default=30, help="other seeds for the spread (default 30)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "eval-samples")
    args = ap.parse_args()
    rows = []
    for name in args.datasets.split(","):
        parts = protocol_splits(load_dataset(name), "standard", seed=SPLIT_SEED)
        for split in ("dev", "test"):
            full = parts[split]
            for n in SIZES:
                if n >= len(full):
                    continue
                strat = [figure(eval_sample(full, n, dataset=name, split=split, seed=s)) for s in range(args.draws)]
                plain = [figure(full.sample(n=n, random_state=s)) for s in range(args.draws)]
                rows.append({
                    "dataset": name, "split": split, "rows": n, "of": len(full), "full": figure(full),
                    "old_prefix_sample": figure(full.sample(n=n, random_state=SPLIT_SEED)),
                    "stratified_sample": figure(eval_sample(full, n, dataset=name, split=split, seed=SPLIT_SEED)),
                    "stratified_draws": {"mean": round(float(np.mean(strat)), 2), "std": round(float(np.std(strat, ddof=1)), 2)},
                    "random_draws": {"mean": round(float(np.mean(plain)), 2), "std": round(float(np.std(plain, ddof=1)), 2)},
                })
    record = {"figure": "word_overlap_spearman (x100)", "rule": SAMPLE_RULE, "draws": args.draws,
              "split_seed": SPLIT_SEED, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(dumps(record, indent=2) + "\n")
    lines = ["| set | split | rows | of | full file | old prefix sample | stratified sample (shipped) | "
             f"stratified, {args.draws} seeds | random, {args.draws} seeds |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['split']} | {r['rows']} | {r['of']:,} | {r['full']:.2f} | "
                     f"{r['old_prefix_sample']:.2f} | {r['stratified_sample']:.2f} | "
                     f"{r['stratified_draws']['mean']:.2f} ± {r['stratified_draws']['std']:.2f} | "
                     f"{r['random_draws']['mean']:.2f} ± {r['random_draws']['std']:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(json.dumps({"rows": len(rows), "out": str(args.out.with_suffix(".json"))}))


if __name__ == "__main__":
    main()
