"""``tuner finetune``: one fine-tune with a given loss combination, then dev/test scores."""
from __future__ import annotations

import argparse

from tuner.commands.common import add_data_dir, parse_loss_map, positive_int, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model with a weighted loss combination",
                       description="Fine-tune with total loss = sum of weight * loss (cos_mse, cosent, ibn, angle); "
                                   "all weights 0 means plain cosine-MSE. Prints dev and test scores.")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--train", required=True, help="training dataset(s): built-in names or files, comma-separated")
    p.add_argument("--eval", default=None, help="evaluation dataset(s) (default: the training datasets)")
    p.add_argument("--weights", default="", help="e.g. cosent=1,ibn=0,angle=1 (missing = 0)")
    p.add_argument("--taus", default="", help="e.g. cosent=20,ibn=20,angle=1")
    p.add_argument("--pooling", default=None, help="cls, cls_avg, avg, max, last or a token index")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-seq-length", type=positive_int, default=128)
    p.add_argument("--max-train-examples", type=positive_int, default=None)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--ibn-positive-threshold", type=float, default=0.6,
                   help="normalised score (0..1) from which a pair is an in-batch-negatives positive (default 0.6 = 3/5)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--protocol", default="standard", choices=("seed", "standard"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None)
    p.add_argument("--output", default=None, help="folder to save the fine-tuned model (transformers + sentence-transformers)")
    p.add_argument("--no-progress", action="store_true")
    add_data_dir(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.engine import run_finetune
    from tuner.losses import DEFAULT_TAUS
    from tuner.train import TrainConfig

    config = TrainConfig(
        weights=parse_loss_map(args.weights, "--weights"),
        taus={**DEFAULT_TAUS, **parse_loss_map(args.taus, "--taus")},
        pooling=args.pooling, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        max_seq_length=args.max_seq_length, warmup_ratio=args.warmup_ratio, seed=args.seed,
        ibn_positive_threshold=args.ibn_positive_threshold, precision=args.precision,
    )
    outcome = run_finetune(args.model, args.train, args.eval, config, protocol=args.protocol, data_dir=args.data_dir,
                           max_train_examples=args.max_train_examples, output=args.output, device=args.device,
                           progress=not args.no_progress)
    payload = {"model": args.model, "metric": outcome.metric, "protocol": args.protocol, "scores": outcome.scores,
               "dev_mean": outcome.dev_score, "test_mean": outcome.test_score, "steps": outcome.train.steps,
               "train_pairs_per_s": outcome.train.pairs_per_s, "wall_s": outcome.train.wall_s,
               "output": str(outcome.output) if outcome.output else None, "config": config.to_dict()}
    if args.json:
        print_json(payload)
    else:
        for split, per_dataset in outcome.scores.items():
            for name, value in per_dataset.items():
                print(f"{split:5s} {name:12s} {outcome.metric} {value * 100:.2f}")
        print(f"steps {outcome.train.steps}, {outcome.train.pairs_per_s:.1f} pairs/s, {outcome.train.wall_s:.1f}s")
        if outcome.output:
            print(f"saved to {outcome.output}")
    return 0
