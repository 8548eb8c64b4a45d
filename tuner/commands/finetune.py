"""``tuner finetune``: one fine-tune with a given loss combination, then dev/test scores.

The run flags are generated from :class:`tuner.config.RunConfig` (one per field, with its help text
and default); ``--config FILE`` starts from a saved run (``best_finetune.json``, ``tuner.json``, a
trial's config) and the flags given override it. argparse -> :func:`tuner.api.finetune` -> print.
"""
from __future__ import annotations

import argparse
import os

from tuner import api, models
from tuner.commands.common import print_json
from tuner.config import ConfigError, RunConfig, add_arguments, from_arguments
from tuner.errors import TunerError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model with a weighted loss combination",
                       description="Fine-tune with total loss = sum of weight * loss over the registered losses; "
                                   "all weights 0 means plain cosine-MSE. Prints dev and test scores. Every run "
                                   "setting has a flag; --config FILE starts from a saved run config and the "
                                   "flags given override it.")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON run config to start from: best_finetune.json of an export, tuner.json beside a saved "
                        "model, or a RunConfig dict (its 'config' object when it has one)")
    add_arguments(p)
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="run once per seed (e.g. 42,43,44) and report each seed's scores and their mean, std and "
                        "95%% interval; overrides --seed")
    p.add_argument("--output", default=None,
                   help="folder to save the fine-tuned model (transformers + sentence-transformers + tuner.json + "
                        "README.md, its model card); with --seeds, one folder per seed: DIR/seed-<seed>")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON (scores, training record, the full config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = api.load_run_config(args.config) if args.config else None
    config = _config_of(args, base)
    if args.seeds is not None:
        return _run_seeds(args, config)
    outcome = api.finetune(config=config, output=args.output, device=args.device, progress=not args.no_progress)
    payload = {"model": outcome.config.model, "metric": outcome.metric, "protocol": outcome.config.protocol,
               "loss": outcome.config.loss, "scores": outcome.scores, "dev_mean": outcome.dev_score,
               "test_mean": outcome.test_score, "steps": outcome.train.steps,
               "train_pairs_per_s": outcome.train.pairs_per_s, "wall_s": outcome.train.wall_s,
               "output": str(outcome.output) if outcome.output else None, "config": outcome.config.to_dict(),
               "command": outcome.config.command(args.output)}
    if args.json:
        print_json(payload)
        return 0
    for split, per_dataset in outcome.scores.items():
        for name, value in per_dataset.items():
            print(f"{split:5s} {name:12s} {outcome.metric} {value * 100:.2f}")
    print(f"loss {outcome.config.loss}; steps {outcome.train.steps}, {outcome.train.pairs_per_s:.1f} pairs/s, "
          f"{outcome.train.wall_s:.1f}s")
    if outcome.output:
        print(f"saved to {outcome.output}")
    return 0


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise TunerError(f"--seeds '{text}' is not a comma-separated list of integers, e.g. 42,43,44") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise TunerError(f"--seeds '{text}' must list one or more different seeds, e.g. 42,43,44")
    return seeds


def _run_seeds(args: argparse.Namespace, config: RunConfig) -> int:
    """One run per seed; per split and dataset the mean, std and 95% interval over the seeds."""
    from tuner.stats import seed_summary

    seeds = _parse_seeds(args.seeds)
    runs = {}
    for seed in seeds:
        output = _seed_folder(args.output, seed) if args.output else None
        outcome = api.finetune(config=config.replace(seed=seed), output=output, device=args.device,
                               progress=not args.no_progress)
        runs[seed] = outcome
        if not args.json:
            shown = ", ".join(f"{split} {name} {v * 100:.2f}" for split, per in outcome.scores.items()
                              for name, v in per.items())
            print(f"seed {seed}: {shown}", flush=True)
    first = runs[seeds[0]]
    summary = {split: {name: seed_summary([runs[s].scores[split][name] for s in seeds]) for name in per}
               for split, per in first.scores.items()}
    command = config.command(args.output) + f" --seeds {args.seeds}"
    if args.output:  # each seed's card gets the spread over all of them, known only now
        for seed in seeds:
            models.write_card(runs[seed].output, {s: runs[s].scores for s in seeds}, seeds_command=command)
    if args.json:
        print_json({"model": first.config.model, "metric": first.metric, "loss": first.config.loss, "seeds": seeds,
                    "scores_by_seed": {str(s): runs[s].scores for s in seeds}, "summary": summary,
                    "config": config.to_dict(), "command": command,
                    "outputs": {str(s): str(runs[s].output) for s in seeds} if args.output else None})
        return 0
    for split, per in summary.items():
        for name, st in per.items():
            low, high = st["ci_low"], st["ci_high"]
            interval = f" 95% CI [{low * 100:.2f}, {high * 100:.2f}]" if low is not None else ""
            std = f" ± {st['std'] * 100:.2f}" if st.get("std") is not None else ""
            print(f"{split:5s} {name:12s} {first.metric} mean {st['mean'] * 100:.2f}{std}{interval} over {len(seeds)} seeds")
    return 0


def _seed_folder(output: str, seed: int) -> str:
    """Where ``--seeds ... --output DIR`` saves the model of one seed."""
    return os.path.join(output, f"seed-{seed}")


def _config_of(args: argparse.Namespace, base: "RunConfig | None") -> RunConfig:
    """The flags over ``base``; a bad value is reported by its flag (``--batch-size is 1; ...``)."""
    try:
        return from_arguments(args, base)
    except ConfigError as exc:
        name = exc.key.split(".")[0]
        flag = "--" + name.replace("_", "-")
        if name not in vars(args):
            raise
        if exc.problem.startswith(flag):
            raise TunerError(exc.problem) from None
        raise TunerError(f"{flag} {exc.problem}" if exc.problem.startswith("is ") else f"{flag}: {exc.problem}") from None
