"""Re-run an export's best trial with several seeds and record the full dev/test scores.

    python scripts/rerun_best.py docs/results/sts-cpu --seeds 42,43,44

Reads ``<export>/best_finetune.json`` (the trial's recorded RunConfig; it scores the full dev and
test splits), fine-tunes it once per seed, and writes ``<export>/best_rerun.json``: per seed the
dev and test score of every eval dataset, the training wall time, and the mean and sample std over
the seeds. Runs in this process, one seed after the other; a seed already in the output file is
kept (the script resumes after a stop).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path, help="an export folder with best_finetune.json")
    ap.add_argument("--seeds", default="42,43,44", help="comma-separated training seeds (default 42,43,44)")
    args = ap.parse_args()

    from tuner.api import finetune, load_run_config

    source = args.export / "best_finetune.json"
    best = json.loads(source.read_text())
    config = load_run_config(source)
    out_path = args.export / "best_rerun.json"
    done = json.loads(out_path.read_text())["runs"] if out_path.is_file() else {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        if str(seed) in done:
            continue
        start = time.perf_counter()
        outcome = finetune(config=config.replace(seed=seed), progress=False)
        done[str(seed)] = {"scores": outcome.scores, "dev": outcome.dev_score, "test": outcome.test_score,
                           "steps": outcome.train.steps, "wall_s": round(time.perf_counter() - start, 1)}
        print(f"seed {seed}: dev {outcome.dev_score:.4f} test {outcome.test_score:.4f}", flush=True)
        _write(out_path, best, config, done)
    _write(out_path, best, config, done)
    return 0


def _write(path: Path, best: dict, config, runs: dict) -> None:
    summary = {}
    for split in ("dev", "test"):
        values = [r[split] for r in runs.values()]
        summary[split] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
                          "n": len(values)}
    record = {"source": "best_finetune.json", "study": best.get("study"), "trial": best.get("trial"),
              "loss": best.get("loss"), "command": best.get("command"), "config": config.to_dict(),
              "scored_on": "the full dev and test splits", "runs": runs, "summary": summary}
    path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
