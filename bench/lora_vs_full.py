"""LoRA against full fine-tuning of the same decoder: training pairs/s and peak memory (issue #17).

Default model: SmolLM2-135M-Instruct (``smollm2-135m``, a 30-layer Llama, 134.5M parameters).
Every mode fine-tunes the same model on the same seeded sample of STS-B train pairs with the same
batch, sequence length, loss (CoSENT, scale 20), prompt (PromptEOL) and last-token pooling through
``tuner.engine._train.finetune``; only what trains differs:

* ``full``:     every weight trains (AdamW moments for all 134.5M parameters);
* ``lora``:     LoRA adapters of rank ``--lora-r`` (alpha = rank) on every linear layer; the base is frozen;
* ``lora-gc``:  the same with gradient checkpointing (activations recomputed in the backward pass).

Each run is its own process (``--one MODE``), so peak memory is that mode's alone: after the model
is loaded the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``), then one untimed warm-up
step, then ``--steps`` timed steps. Memory: on CPU the peak RSS during training (``VmHWM``) and that
peak minus the RSS before training (what training adds); on CUDA ``torch.cuda.max_memory_allocated``.
Runs alternate between modes for ``--repeats`` rounds; medians and ratios against ``full`` are printed
as JSON lines, and written to ``--out`` (JSON) when given.

    python bench/lora_vs_full.py --out bench/results/lora_vs_full.json     # ~5 min on 2 cores
    python bench/lora_vs_full.py --smoke                                    # seconds-scale, tiny run
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from common import emit, environment, median, note, rss_now_mb, stsb_train_pairs

from tuner.models._decoder import PROMPTEOL

MODES = ("full", "lora", "lora-gc")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """``VmHWM``: the peak RSS since the process started or since :func:`reset_peak_rss`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One mode in this process: load, reset the peak counter, warm up, time ``args.steps`` steps."""
    import torch

    from tuner.config import RunConfig
    from tuner.models._encoder import load_encoder
    from tuner.engine._train import finetune

    torch.manual_seed(0)
    pairs = stsb_train_pairs((args.steps + 2) * args.batch_size, seed=0)
    encoder = load_encoder(args.model, pooling="last", prompt=args.prompt or "", device=args.device)
    cuda = encoder.device.type == "cuda"
    rss_loaded = rss_now_mb()
    reset = reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    config = RunConfig(weights={"cosent": 1.0}, batch_size=args.batch_size, max_seq_length=args.max_seq_length,
                       pooling="last", prompt=args.prompt or None, lr=1e-4, seed=0, max_steps=args.steps + 2,
                       lora_r=0 if mode == "full" else args.lora_r,
                       gradient_checkpointing=mode == "lora-gc", eval_every=1)
    step_times: list[float] = []
    last = [time.perf_counter()]

    def on_step(_step: int) -> None:  # finetune's on_eval hook, called after every step (eval_every=1)
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    result = finetune(encoder, pairs, config, on_eval=on_step, progress=False)
    # finetune calls the hook after every step but the last: steps + 1 intervals, the first of which
    # holds the set-up and the warm-up step (allocations, lazy init)
    timed = step_times[1:]
    return {"mode": mode, "trainable_params": result.trainable_params,
            "total_params": sum(p.numel() for p in encoder.model.parameters()),
            "steps_timed": len(timed), "pairs_per_s": args.batch_size * len(timed) / sum(timed),
            "rss_loaded_mb": rss_loaded,
            "peak_rss_mb": peak_rss_mb() if reset else None,
            "train_peak_over_loaded_mb": peak_rss_mb() - rss_loaded if reset else None,
            "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None,
            "final_loss": result.losses[-1]}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="timed optimiser steps per run (after 1 warm-up step)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--prompt", default=PROMPTEOL, help="prompt template ('' for none)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="write the runs and the summary to this JSON file")
    ap.add_argument("--one", default=None, choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="batch 4, 1 timed step, 1 repeat")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.repeats = 4, 1, 1
    if args.one:
        print(json.dumps(run_one(args.one, args)), flush=True)
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    passthrough = [f"--model={args.model}", f"--batch-size={args.batch_size}", f"--steps={args.steps}",
                   f"--max-seq-length={args.max_seq_length}", f"--lora-r={args.lora_r}", f"--prompt={args.prompt}",
                   f"--device={args.device}"]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for round_ in range(args.repeats):
        for mode in (modes if round_ % 2 == 0 else modes[::-1]):
            done = subprocess.run([sys.executable, __file__, "--one", mode, *passthrough],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"mode {mode} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            runs[mode].append(row)
            emit(bench="lora_vs_full", round=round_, **row)
    summary = {}
    for mode, rows in runs.items():
        summary[mode] = {key: median([r[key] for r in rows]) if rows[0][key] is not None else None
                         for key in ("pairs_per_s", "peak_rss_mb", "train_peak_over_loaded_mb", "cuda_peak_mb")}
        summary[mode]["trainable_params"] = rows[0]["trainable_params"]
        summary[mode]["total_params"] = rows[0]["total_params"]
        if "full" in runs and mode != "full":
            full = summary["full"]
            summary[mode]["speed_vs_full"] = summary[mode]["pairs_per_s"] / full["pairs_per_s"]
            for key in ("peak_rss_mb", "train_peak_over_loaded_mb", "cuda_peak_mb"):
                if summary[mode][key] is not None and full[key]:
                    summary[mode][f"{key}_vs_full"] = summary[mode][key] / full[key]
    settings = {k: v for k, v in vars(args).items() if k not in ("one", "out")}
    emit(bench="lora_vs_full", summary=summary, settings=settings)
    for mode, row in summary.items():
        note(f"{mode:>8}: {row['pairs_per_s']:.2f} pairs/s, trainable {row['trainable_params']:,} of "
             f"{row['total_params']:,}, training adds {row['train_peak_over_loaded_mb'] or float('nan'):.0f} MiB")
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps({"settings": settings, "environment": environment(), "summary": summary,
                                   "runs": runs}, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown(summary, settings))
    return 0


def markdown(summary: dict[str, dict[str, Any]], settings: dict[str, Any]) -> str:
    """One row per mode: trainable parameters, pairs/s and peak memory, with ratios to full fine-tuning."""
    memory = "cuda_peak_mb" if summary[next(iter(summary))].get("cuda_peak_mb") is not None else "train_peak_over_loaded_mb"
    label = "peak GPU memory (MiB)" if memory == "cuda_peak_mb" else "RSS added by training (MiB)"
    lines = [f"| mode | trainable parameters | pairs/s | vs full | {label} | vs full | peak RSS (MiB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode, row in summary.items():
        speed = f"{row['speed_vs_full']:.2f}x" if "speed_vs_full" in row else "1x"
        mem_ratio = f"{row[memory + '_vs_full']:.2f}x" if memory + "_vs_full" in row else ("1x" if mode == "full" else "–")
        peak = "–" if row.get("peak_rss_mb") is None else f"{row['peak_rss_mb']:,.0f}"
        lines.append(f"| {mode} | {row['trainable_params']:,} of {row['total_params']:,} | {row['pairs_per_s']:.2f} | "
                     f"{speed} | {row[memory] or float('nan'):,.0f} | {mem_ratio} | {peak} |")
    lines += ["", f"Batch {settings['batch_size']}, {settings['max_seq_length']} tokens, {settings['steps']} timed steps "
                  f"after 1 warm-up step, median of {settings['repeats']} runs per mode (one process each), "
                  f"LoRA r {settings['lora_r']} on every linear layer, device {settings['device']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
