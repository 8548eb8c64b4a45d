"""Measure in-batch negatives' duplicate rule (issue #24): ``positive`` / ``mask`` / ``off`` x 3 seeds.

    python scripts/ibn_duplicates.py                      # count duplicates, then every missing run
    python scripts/ibn_duplicates.py --count-only         # only how often duplicates occur in a batch

Fine-tunes the default encoder (all-MiniLM-L6-v2) with the in-batch-negatives loss alone
(``--weights ibn=1``, tau 20) under each rule of ``ibn_duplicates``, on two tasks:

* ``nli``: SNLI triplets (premise, entailed, contradiction; tuner's nli-transfer protocol, the
  triplet form of the loss), ``max_train_examples`` NLI rows taken as whole premises;
* ``stsb``: STS-B train pairs (pair form; positives = score >= 3 of 5), ``max_train_examples`` rows.

Both are scored on the full STS-B dev (1,500 pairs) and test (1,379 pairs) files. The budget is
the one stated in ``BUDGET`` (1 epoch over a seeded subset of the training rows, batch 32: the
machine is 2 shared CPU cores); the subset is drawn with the run's seed, as ``max_train_examples``
always is, and the three rules of one seed train on the same rows, batches and initialisation,
so they compare paired over seeds.

Before training, ``counts.json`` records how often a batch holds a candidate identical to an
anchor's own positive (the rule can only matter then), over every batch of the first epoch drawn
exactly as the trainer draws them. Each run is one ``<task>-<rule>-seed<seed>.json``; a run whose
file exists is skipped (the script resumes after a stop). ``summary.json`` gathers them: per task
and rule mean ± std over the seeds, and each rule against ``off`` paired by seed
(:func:`tuner.stats.seed_summary` of the per-seed differences); ``scripts/readme_tables.py``
renders it in docs/losses.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "results" / "ibn-duplicates"
RULES = ("positive", "mask", "off")
SEEDS = (42, 43, 44)
# STS-B first: copies are commoner there. Rows: about 25 steps of STS-B pairs and 13 of NLI triplets a
# run, sized for 18 runs in about an hour on 2 CPU cores shared with other jobs (full dev+test scoring
# of 2,879 pairs is a fixed part of every run).
TASKS = {
    "stsb": {"train": ["stsb"], "protocol": "standard", "task": "sts", "max_train_examples": 800},
    "nli": {"train": ["snli"], "protocol": "nli-transfer", "task": "nli", "max_train_examples": 1200},
}
BUDGET = {"epochs": 1, "batch_size": 32, "lr": 2e-5, "weights": {"ibn": 1.0}}


def run_config(task: str, rule: str, seed: int) -> Any:
    from tuner.config import RunConfig

    return RunConfig(eval=["stsb"], ibn_duplicates=rule, seed=seed, **TASKS[task], **BUDGET)


def count_duplicates(task: str, seed: int) -> dict[str, Any]:
    """Duplicate candidates in the first epoch's batches of ``task`` at ``seed``, drawn as the trainer draws them."""
    import numpy as np

    from tuner.engine._run import prepare_data
    from tuner.engine._train import _views, length_grouped_batches
    from tuner.losses.combined import CombinedLoss
    from tuner.models import load_encoder

    config = run_config(task, "positive", seed)
    data = prepare_data(config)
    tok = load_encoder(config.model).tokenizer
    view = _views(data.train, CombinedLoss.from_config(config), tok, config.max_seq_length)[0]
    batches = length_grouped_batches(view.lengths, config.batch_size, np.random.default_rng(seed))
    labels = view.ids[2].numpy() if view.kind == "pairs" else None
    anchors = with_dup = copies = batches_with = repeated_anchor = 0
    for batch in batches:
        cols = [t[batch] for t in view.texts]
        if view.kind == "pairs":  # anchors: positive pairs; copies of b_i among the b's, of a_i among the a's
            pos = labels[batch] >= config.ibn_positive_threshold - 1e-6
            same = [(c[pos, None] == c[None, :]).sum(1) - 1 for c in cols]
            n_copies = same[0] + same[1]
            repeated_anchor += int(((cols[0][pos, None] == cols[0][None, :]).sum(1) - 1 > 0).sum())
        else:  # anchors: every row; copies of p_i among the positives and hard negatives
            cand = np.concatenate([cols[1], cols[2][cols[2] >= 0]])
            n_copies = (cols[1][:, None] == cand[None, :]).sum(1) - 1
            repeated_anchor += int(((cols[0][:, None] == cols[0][None, :]).sum(1) - 1 > 0).sum())
        anchors += len(n_copies)
        with_dup += int((n_copies > 0).sum())
        copies += int(n_copies.sum())
        batches_with += int((n_copies > 0).any())
    return {"task": task, "seed": seed, "form": view.kind, "batch_size": config.batch_size, "batches": len(batches),
            "batches_with_a_duplicate": batches_with, "anchors": anchors, "anchors_with_a_duplicate": with_dup,
            "duplicate_candidates": copies, "anchors_whose_text_repeats_in_the_batch": repeated_anchor}


def train_one(task: str, rule: str, seed: int, prepared: Any) -> dict[str, Any]:
    from tuner.engine import run_finetune

    config = run_config(task, rule, seed)
    start = time.perf_counter()
    outcome = run_finetune(config, prepared=prepared, progress=False)
    return {"task": task, "rule": rule, "seed": seed, "dev": outcome.scores["dev"]["stsb"],
            "test": outcome.scores["test"]["stsb"], "steps": outcome.train.steps,
            "train_rows": len(prepared.train), "wall_s": round(time.perf_counter() - start, 1),
            "scored_on": "STS-B full dev (1500 pairs) and test (1379 pairs), Spearman",
            "config": outcome.config.to_dict()}


def summarise(out: Path) -> dict[str, Any]:
    """Per task and rule: mean/std over seeds; each rule minus ``off``, paired by seed."""
    from tuner.stats import seed_summary

    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*-seed*.json"))]
    summary: dict[str, Any] = {"budget": BUDGET, "tasks": {t: {k: v for k, v in c.items()} for t, c in TASKS.items()},
                               "seeds": list(SEEDS), "rules": list(RULES), "results": {}}
    for task in TASKS:
        by = {(r["rule"], r["seed"]): r for r in runs if r["task"] == task}
        rows: dict[str, Any] = {}
        for rule in RULES:
            seeds = [s for s in SEEDS if (rule, s) in by]
            rows[rule] = {"n": len(seeds), "steps": sorted({by[(rule, s)]["steps"] for s in seeds})}
            for split in ("dev", "test"):
                rows[rule][split] = seed_summary([by[(rule, s)][split] for s in seeds])
                paired = [s for s in seeds if ("off", s) in by]
                if rule != "off" and paired:
                    rows[rule][f"{split}_vs_off"] = seed_summary([by[(rule, s)][split] - by[("off", s)][split]
                                                                  for s in paired])
        summary["results"][task] = rows
    counts = out / "counts.json"
    if counts.is_file():
        summary["counts"] = json.loads(counts.read_text())
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--count-only", action="store_true", help="write counts.json and stop")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    counts_path = args.out / "counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.is_file() else {}
    for task in tasks:
        for seed in SEEDS:
            key = f"{task}-seed{seed}"
            if key not in counts:
                counts[key] = count_duplicates(task, seed)
                print(json.dumps(counts[key]), flush=True)
                counts_path.write_text(json.dumps(counts, indent=2) + "\n")
    if args.count_only:
        return 0
    from tuner.engine._run import prepare_data

    for task in tasks:
        for seed in SEEDS:
            todo = [r for r in RULES if not (args.out / f"{task}-{r}-seed{seed}.json").is_file()]
            if not todo:
                continue
            prepared = prepare_data(run_config(task, "off", seed))  # the same rows for every rule of a seed
            for rule in todo:
                record = train_one(task, rule, seed, prepared)
                (args.out / f"{task}-{rule}-seed{seed}.json").write_text(json.dumps(record, indent=2) + "\n")
                print(f"{task} {rule} seed {seed}: dev {record['dev']:.4f} test {record['test']:.4f} "
                      f"({record['steps']} steps, {record['wall_s']:.0f} s)", flush=True)
    (args.out / "summary.json").write_text(json.dumps(summarise(args.out), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
