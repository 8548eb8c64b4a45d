"""Peak RSS across consecutive trials in one process (one worker): does memory stay flat?

Runs ``--trials`` (default 20) small ``sts-quick``-like trials back to back (see
``trial_overhead.py``; here 64 train pairs, batch 16, 64-pair dev/test samples, an SQLite study)
and prints after every trial the peak RSS so far (``ru_maxrss``) and the current RSS (VmRSS),
then the first-vs-last summary. Flat = the peak after the last trial is within noise of the
peak after the first (caches fill on trial 1; nothing should grow after that). Trials rotate
through five loss/pooling configs with different seeds, as a study's do, and a trial's peak
depends on its config and batches, so the peak may step up until every config has run once:
the summary also gives the growth after that first rotation. ``--identical`` runs the same
trial 20 times (a pure leak test).

    python bench/rss_trials.py                 # 20 trials, a few minutes on 2 cores
    python bench/rss_trials.py --smoke         # 3 tiny trials
    python bench/rss_trials.py --model smollm2-135m --trials 10 --pooling last --lora-r 8 \
        --prompt 'This sentence : "{text}" means in one word:"' --train-pairs 32 --eval-pairs 32
                                               # a decoder with LoRA adapters and a prompt
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import CHOICES, QuickTrialRunner, emit, environment, note, rss_now_mb, rss_peak_mb, set_threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--identical", action="store_true",
                    help="every trial the same config and seed (a pure leak test); default: configs rotate")
    ap.add_argument("--malloc-trim", action="store_true",
                    help="glibc malloc_trim(0) after each trial (what a worker could do between trials)")
    ap.add_argument("--pooling", default=None, help="every trial this pooling (default: the rotation's)")
    ap.add_argument("--prompt", default=None, help="every trial this prompt template ({text} where the sentence goes)")
    ap.add_argument("--lora-r", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    ap.add_argument("--train-pairs", type=int, default=64)
    ap.add_argument("--eval-pairs", type=int, default=64, help="dev/test sample size")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-model-cache", action="store_true",
                    help="TUNER_MODEL_CACHE=0: every trial reads the model from disk (tuner.models._cache off)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if args.no_model_cache:
        os.environ["TUNER_MODEL_CACHE"] = "0"
    quick = {"max_train_examples": args.train_pairs, "max_eval_examples": args.eval_pairs, "batch_size": 16,
             "eval_every": 2}
    run_settings = {k: v for k, v in {"pooling": args.pooling, "prompt": args.prompt,
                                      "lora_r": args.lora_r or None}.items() if v is not None}
    if args.smoke:
        quick = {"max_train_examples": 16, "max_eval_examples": 16, "batch_size": 8, "eval_every": None}
        args.trials = 3
    start_rss = rss_now_mb()
    with tempfile.TemporaryDirectory() as tmp:
        runner = QuickTrialRunner(args.model, Path(tmp) / "rss.db", quick=quick, device=args.device,
                                  malloc_trim=args.malloc_trim, run_settings=run_settings)
        rows = []
        for number in range(args.trials):
            row = runner.run(number, identical=args.identical)
            rows.append({"trial": number + 1, "peak_rss_mb": rss_peak_mb(), "rss_mb": rss_now_mb(),
                         "total_s": row["total_s"]})
            emit(bench="rss_trials", **rows[-1])
            note(f"[rss] trial {number + 1}: peak {rows[-1]['peak_rss_mb']:.0f} MiB, now {rows[-1]['rss_mb']:.0f} MiB")
    first, last = rows[0], rows[-1]
    # with rotating configs the peak is set by the hungriest config seen so far: compare from the
    # end of the first full rotation as well
    rotated = rows[min(len(CHOICES), len(rows)) - 1]
    emit(bench="rss_trials", summary=True, trials=args.trials, identical=args.identical,
         malloc_trim=args.malloc_trim, rss_before_mb=start_rss,
         peak_after_first_rotation_mb=None if args.identical else rotated["peak_rss_mb"],
         peak_growth_after_first_rotation_mb=None if args.identical else last["peak_rss_mb"] - rotated["peak_rss_mb"],
         first_peak_rss_mb=first["peak_rss_mb"], last_peak_rss_mb=last["peak_rss_mb"],
         peak_growth_mb=last["peak_rss_mb"] - first["peak_rss_mb"],
         first_rss_mb=first["rss_mb"], last_rss_mb=last["rss_mb"], rss_growth_mb=last["rss_mb"] - first["rss_mb"],
         rss_growth_after_trial_2_mb=last["rss_mb"] - rows[min(1, len(rows) - 1)]["rss_mb"],
         model=args.model, settings=runner.quick, run_settings=run_settings, model_cache=model_cache_info(), env=environment())
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
