"""Per-trial overhead of an ``sts-quick``-like trial: everything that is not training or evaluation.

Trial (``studies/sts-quick.toml`` settings): all-MiniLM-L6-v2, 256 STS-B train pairs, batch 16,
lr 5e-5, 64 tokens, 1 epoch (16 steps), dev scored every 8 steps for pruning, then dev and test
(200-pair samples each) scored. Loss weights and pooling rotate between trials as a study's
would. Phases, timed per trial, in one process (like one worker):

* storage:    ask, user attrs, report/should_prune, tell on an SQLite study
               (``tuner.storage.open_storage`` when that module exists, else optuna's RDBStorage);
* data:       ``prepare_data`` (load, split, subsample) -- cached per worker after the first trial;
* model_load: ``load_encoder`` (disk on the first trial; a copy of the base weights kept by
               ``tuner.models._cache`` later; every trial from disk with ``--no-model-cache``);
* tokenize:   token ids of the train and eval texts (cached by tokenizer + max length);
* train:      ``finetune`` minus the dev scoring it triggers;
* eval:       dev scoring during training + final dev/test scoring;
* cleanup:    dropping the model, ``gc.collect()`` (as ``objectives.common.run_objective`` does).

overhead % = (total - train - eval) / total, for the first trial and the later ones (caches warm),
from wall seconds and from CPU seconds of this process (steadier on a shared machine).
The study's one-off zero-shot scoring is not part of any trial and is left out.

    python bench/trial_overhead.py                 # 4 trials: the first + 3 warm
    python bench/trial_overhead.py --smoke
"""
from __future__ import annotations

import argparse
import gc
import os
import tempfile
from pathlib import Path

from common import QuickTrialRunner, emit, environment, median, note, set_threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-storage", action="store_true")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="after the first trial: gc.collect(); gc.freeze() (what a worker could do once warm), so "
                         "the per-trial gc.collect() only scans objects created since")
    ap.add_argument("--smoke", action="store_true", help="2 trials of 32 pairs, batch 8, 32-pair eval samples")
    ap.add_argument("--no-model-cache", action="store_true",
                    help="TUNER_MODEL_CACHE=0: every trial reads the model from disk (tuner.models._cache off)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if args.no_model_cache:
        os.environ["TUNER_MODEL_CACHE"] = "0"
    quick = {"max_train_examples": 32, "max_eval_examples": 32, "batch_size": 8, "eval_every": 2} if args.smoke else None
    trials = 2 if args.smoke else args.trials

    with tempfile.TemporaryDirectory() as tmp:
        runner = QuickTrialRunner(args.model, None if args.no_storage else Path(tmp) / "bench.db", quick=quick,
                                  device=args.device)
        rows = []
        for number in range(trials):
            row = runner.run(number)
            rows.append(row)
            emit(bench="trial_overhead", **row)
            if number == 0 and args.gc_freeze:
                gc.collect()
                gc.freeze()
            note(f"[trial {number}] total {row['total_s']:.2f}s overhead {row['overhead_pct']:.1f}% "
                 f"(cpu {row['overhead_pct_cpu']:.1f}%)")
        later = rows[1:] or rows
        phases = ("storage", "data", "model_load", "tokenize", "train", "eval", "cleanup")
        emit(bench="trial_overhead", summary=True, first_trial_overhead_pct=rows[0]["overhead_pct"],
             first_trial_overhead_pct_cpu=rows[0]["overhead_pct_cpu"],
             later_trials_overhead_pct_median=median([r["overhead_pct"] for r in later]),
             later_trials_overhead_pct_cpu_median=median([r["overhead_pct_cpu"] for r in later]),
             later_trials_overhead_pct=[r["overhead_pct"] for r in later],
             later_trials_total_s_median=median([r["total_s"] for r in later]),
             later_phase_s_median={p: median([r.get(f"{p}_s", 0.0) for r in later]) for p in phases},
             later_phase_cpu_s_median={p: median([r.get(f"{p}_cpu_s", 0.0) for r in later]) for p in phases},
             storage=getattr(runner, "storage_kind", None), gc_freeze=args.gc_freeze, settings=runner.quick,
             model_cache=model_cache_info(), env=environment())
    return 0


def model_cache_info():
    """Loads from disk and from memory (``tuner.models._cache``; None before it existed)."""
    try:
        from tuner.models import _cache as model_cache
    except ImportError:
        return None
    return model_cache.info()


if __name__ == "__main__":
    raise SystemExit(main())
