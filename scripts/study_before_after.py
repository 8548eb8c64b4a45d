"""Before/after of a finished TPE study: the zero-shot row against the trial chosen on dev.

Reads the study from its storage and writes a JSON record and a markdown table (``--out`` .json/.md):
per eval set, the dev and test scores (x100 in the table) of the model as it ships (the study's
zero-shot row, scored once on the same dev/test samples) and of the best trial by the objective
(mean dev score; test is read, never used to choose), the gain, the best trial's settings (losses,
weights, taus, prompt, LoRA rank, pooling), its trainable-parameter count and training pairs/s, and
how many trials completed / were pruned or failed.

    python scripts/study_before_after.py --study sts-lora-cpu --storage sqlite:///runs/lora.db \
        --out docs/results/sts-lora-cpu/before_after
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from tuner.models import LoraSettings


def before_after(study: Any) -> dict[str, Any]:
    """The record: zero-shot and best-trial scores per split and set, and the best trial's settings."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise SystemExit(f"study {study.study_name} has no complete trial yet")
    best = max(complete, key=lambda t: t.value)
    attrs = best.user_attrs
    model = attrs.get("model")
    scores: dict[str, dict[str, dict[str, Optional[float]]]] = {}
    for split in ("dev", "test"):
        for key, value in attrs.items():
            prefix = f"scores.{split}."
            if key.startswith(prefix):
                name = key[len(prefix):]
                zero = study.user_attrs.get(f"zero_shot.{model}.{name}.{split}")
                scores.setdefault(name, {})[split] = {"zero_shot": zero, "best": value,
                                                      "gain": None if zero is None else value - zero}
    config = attrs.get("config", {})
    return {"study": study.study_name, "model": model, "best_trial": best.number, "objective": best.value,
            "trials": {"complete": len(complete), "pruned": sum(t.state.name == "PRUNED" for t in trials),
                       "failed": sum(t.state.name == "FAIL" for t in trials)},
            "scores": scores,
            "settings": {k: config.get(k) for k in ("weights", "taus", "pooling", "prompt", "lora_r", "lora_alpha",
                                                     "lora_targets", "lr", "epochs", "batch_size",
                                                     "max_train_examples", "max_eval_examples", "max_seq_length")},
            "params": best.params, "trainable_params": attrs.get("trainable_params"),
            "train_pairs_per_s": attrs.get("train_pairs_per_s"), "cpu_s": attrs.get("cpu_s")}


def markdown(record: dict[str, Any]) -> str:
    def pct(v: Optional[float]) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    lines = ["| set | split | zero-shot | best trial | gain |", "| --- | --- | ---: | ---: | ---: |"]
    for name, per in record["scores"].items():
        for split in ("dev", "test"):
            if split in per:
                row = per[split]
                gain = "–" if row["gain"] is None else f"{100 * row['gain']:+.2f}"
                lines.append(f"| {name} | {split} | {pct(row['zero_shot'])} | {pct(row['best'])} | {gain} |")
    s = record["settings"]
    on = {k: v for k, v in (s.get("weights") or {}).items() if v}  # the losses that were on
    weights = " + ".join(f"{k} {v:.2f}" for k, v in on.items())
    taus = ", ".join(f"{k} {v:.3g}" for k, v in (s.get("taus") or {}).items() if k in on)
    prompt = f"`{s['prompt']}`" if s.get("prompt") else "none"
    trainable = record["trainable_params"]
    lines += ["", f"Best trial #{record['best_trial']} of {record['trials']['complete']} complete "
                  f"({record['trials']['pruned']} pruned, {record['trials']['failed']} failed): {weights}"
                  + (f" (taus {taus})" if taus else "") + f", prompt {prompt}, pooling {s.get('pooling')}, "
              f"LoRA r {s.get('lora_r') or 0}"
              + (f" (alpha {LoraSettings(s['lora_r'], s.get('lora_alpha')).alpha})" if s.get("lora_r")
                 else " (full fine-tuning)")
              + (f", {trainable:,} trainable parameters" if trainable else "")
              + (f", {record['train_pairs_per_s']} training pairs/s" if record.get("train_pairs_per_s") else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    import optuna

    record = before_after(optuna.load_study(study_name=args.study, storage=args.storage))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
