"""Real runs on the training shapes users bring: (anchor, positive) pairs, and (anchor, positive,
negative) triplets when a mined file is given, scored on STS-B and on the SNLI retrieval set
against the zero-shot model (issue #24).

* pairs: STS-B's official train pairs scored >= 4 (of 5) as (anchor, positive), nothing else kept;
  in-batch negatives (the only registered loss that trains on unscored pairs), mean pooling;
* triplets (``--triplets FILE``, e.g. from ``python -m tuner mine``): the same loss with the mined
  negative joining the in-batch candidates;
* scored: STS-B dev (selection) and test, full files; the SNLI retrieval folder
  (``scripts/snli_retrieval.py``) dev and test qrels, NDCG@10;
* seeds 42, 43, 44 (training order and init of nothing else: the model is pre-trained); per score
  the mean, std and 95% t-interval over the seeds, and the same for the gain over zero-shot.

    python scripts/shapes_real.py [--triplets /tmp/stsb-mined.parquet] [--epochs 1]
        # writes docs/results/shapes/{pairs,triplets}-stsb.{json,md}

The training file is written under --work (default /tmp/tuner-shapes), never into the repo.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

import tuner
from tuner.data import load_dataset
from tuner.jsonsafe import dumps
from tuner.stats import seed_summary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from snli_retrieval import build as build_retrieval  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


def stsb_pairs(work: Path) -> Path:
    """STS-B train pairs scored >= 4 as (anchor, positive); returns the CSV's path."""
    train = load_dataset("stsb").splits["train"]
    kept = train[train["score"] >= 4.0]
    path = work / "stsb-pairs-ge4.csv"
    pd.DataFrame({"anchor": kept["sentence1"], "positive": kept["sentence2"]}).to_csv(path, index=False)
    return path


def zero_shot(evals: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for split in ("dev", "test"):
        frame = tuner.evaluate(MODEL, evals, split=split)
        out[split] = {row.dataset: float(row.score) for row in frame.itertuples()}
    return out


def render(record: dict) -> list[str]:
    """The record as a Markdown table: per set and split, zero-shot, fine-tuned mean ± std and the gain's 95% interval."""
    lines = [f"| set, split (full) | metric | zero-shot | {record['shape']}, {len(record['seeds'])} seeds: mean ± std "
             "| gain (95% t-interval over seeds) |", "|---|---|---:|---:|---:|"]
    for split in ("dev", "test"):
        for name, v in record["summary"][split].items():
            g = v["gain"]
            lines.append(f"| {name} {split} | {record['metrics'].get(name, 'spearman')} | {100 * v['zero_shot']:.2f} | "
                         f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f} | {100 * g['mean']:+.2f} "
                         f"[{100 * g['ci_low']:+.2f}, {100 * g['ci_high']:+.2f}] |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--triplets", type=Path, default=None, help="a mined triplets file (anchor, positive, negative)")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tuner-shapes"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "shapes")
    ap.add_argument("--render", type=Path, default=None, help="only re-write the .md of this JSON record")
    args = ap.parse_args()
    if args.render is not None:
        args.render.with_suffix(".md").write_text("\n".join(render(json.loads(args.render.read_text()))) + "\n")
        return
    args.work.mkdir(parents=True, exist_ok=True)
    retrieval = args.work / "snli-retrieval"
    if not (retrieval / "corpus.jsonl").exists():
        build_retrieval(ROOT.parent / "shared" / "data", retrieval)
    evals = ["stsb", str(retrieval)]
    shape, train = ("triplets", args.triplets) if args.triplets else ("pairs", stsb_pairs(args.work))
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    base = zero_shot(evals)
    runs = {}
    for seed in seeds:
        outcome = tuner.finetune(MODEL, train=str(train), eval=evals, weights={"ibn": 1.0}, seed=seed,
                                 epochs=args.epochs, batch_size=32, progress=False)
        runs[seed] = outcome.scores
    summary = {split: {k: {**seed_summary([runs[s][split][k] for s in seeds]),
                                         "zero_shot": base[split][k],
                                         "gain": seed_summary([runs[s][split][k] - base[split][k] for s in seeds])}
                       for k in runs[seeds[0]][split]}
               for split in ("dev", "test")}
    record = {"shape": shape, "model": MODEL, "train": train.name, "train_rows": len(pd.read_csv(train))
              if train.suffix == ".csv" else len(pd.read_parquet(train)),
              "loss": "ibn=1", "epochs": args.epochs, "batch_size": 32, "seeds": seeds,
              "metrics": {"stsb": "spearman", retrieval.name: "ndcg@10"}, "summary": summary,
              "per_seed": {str(s): runs[s] for s in seeds}, "wall_s": round(time.perf_counter() - start, 1),
              "command": "python scripts/shapes_real.py" + (f" --triplets {args.triplets}" if args.triplets else "")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{shape}-stsb.json").write_text(dumps(record, indent=2) + "\n")
    (args.out / f"{shape}-stsb.md").write_text("\n".join(render(record)) + "\n")
    print(json.dumps({split: {k: (round(v["mean"], 4), round(v["gain"]["mean"], 4)) for k, v in per.items()}
                      for split, per in summary.items()}))


if __name__ == "__main__":
    main()
