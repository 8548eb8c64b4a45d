"""Cross-check of the `st-example` baseline of ``confirm``: sentence-transformers' STS-B training
example run by sentence-transformers itself and by tuner (``ST_EXAMPLE_RECIPE``), same model, data,
epochs and seed, both scored on the full STS-B test file by tuner's evaluator and by
sentence-transformers' ``EmbeddingSimilarityEvaluator`` (issue #23, item 1).

The recipe (``examples/sentence_transformer/training/sts/training_stsbenchmark.py``, read for
sentence-transformers 6.3): CosineSimilarityLoss on (sentence1, sentence2, score / 5), mean pooling,
batch 16, ``warmup_ratio=0.1``, and the ``SentenceTransformerTrainingArguments`` defaults for the
rest (lr 5e-5, weight decay 0, gradient clipping 1.0, shuffled batches). The two libraries draw
their batches from different random streams, so equal seeds do not give equal runs: compare the
means over ``--seeds`` with their spread.

    python scripts/st_example_crosscheck.py --epochs 1 --seeds 42   # docs/results/st-example-crosscheck.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import tuner
from tuner.data import load_dataset
from tuner.jsonsafe import dumps
from tuner.models._encoder import resolve_model
from tuner.service._confirm_plan import ST_EXAMPLE_RECIPE
from tuner.stats import seed_summary

ROOT = Path(__file__).resolve().parents[1]
MODEL = "all-MiniLM-L6-v2"


def st_run(epochs: int, seed: int, max_seq_length: int, work: Path) -> tuple[Path, float]:
    """Train with sentence-transformers' own trainer; returns the saved folder and the wall seconds."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)

    train = load_dataset("stsb").splits["train"]
    data = Dataset.from_dict({"sentence1": train["sentence1"].tolist(), "sentence2": train["sentence2"].tolist(),
                              "score": (train["score"] / 5.0).tolist()})
    model = SentenceTransformer(resolve_model(MODEL), device="cpu")
    model.max_seq_length = max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / f"st-{seed}-ckpt"), num_train_epochs=epochs, per_device_train_batch_size=16,
        warmup_ratio=0.1, seed=seed, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    start = time.perf_counter()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                               loss=losses.CosineSimilarityLoss(model)).train()
    wall = time.perf_counter() - start
    out = work / f"st-{seed}"
    model.save(str(out))
    return out, wall


def st_score(folder: Path) -> float:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    test = load_dataset("stsb").splits["test"]
    evaluator = EmbeddingSimilarityEvaluator(test["sentence1"].tolist(), test["sentence2"].tolist(),
                                             (test["score"] / 5.0).tolist(), name="stsb-test")
    result = evaluator(SentenceTransformer(str(folder), device="cpu"))
    return float(result[next(k for k in result if k.endswith("spearman_cosine"))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "st-example-crosscheck.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in seeds:
            st_folder, st_wall = st_run(args.epochs, seed, args.max_seq_length, work)
            start = time.perf_counter()
            recipe = {k: v for k, v in ST_EXAMPLE_RECIPE.items() if k != "epochs"}
            ours = tuner.finetune(MODEL, train="stsb", output=str(work / f"tuner-{seed}"), seed=seed,
                                  epochs=args.epochs, max_seq_length=args.max_seq_length, progress=False, **recipe)
            tuner_wall = time.perf_counter() - start
            rows.append({
                "seed": seed,
                "sentence_transformers": {"tuner_evaluator": float(tuner.evaluate(str(st_folder), "stsb").score[0]),
                                          "st_evaluator": st_score(st_folder), "train_wall_s": round(st_wall, 1)},
                "tuner": {"tuner_evaluator": float(ours.scores["test"]["stsb"]),
                          "st_evaluator": st_score(work / f"tuner-{seed}"), "wall_s_with_scoring": round(tuner_wall, 1)},
            })
    diffs = [r["tuner"]["tuner_evaluator"] - r["sentence_transformers"]["tuner_evaluator"] for r in rows]
    record = {"model": MODEL, "epochs": args.epochs, "seeds": seeds, "max_seq_length": args.max_seq_length,
              "recipe": ST_EXAMPLE_RECIPE, "split": "stsb test (1,379 pairs, full file)", "runs": rows,
              "tuner_minus_st": {"per_seed": diffs, **(seed_summary(diffs) if len(diffs) > 1 else
                                                      {"mean": float(np.mean(diffs))})},
              "command": f"python scripts/st_example_crosscheck.py --epochs {args.epochs} --seeds {args.seeds}"}
    args.out.write_text(dumps(record, indent=2) + "\n")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
