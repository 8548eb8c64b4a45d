"""``tuner mine``: hard negatives for (anchor, positive) pairs, mined with a model's own similarities.

    python -m tuner mine --model all-MiniLM-L6-v2 --train pairs.csv --out triplets.parquet \\
        --num-negatives 3 --range-min 0 --range-max 30 --margin 0.05

Every option is checked before the model loads; a bad one is one line and exit 2, and nothing is
written (the output goes through a temporary file). See docs/data.md "Hard-negative mining".
"""
from __future__ import annotations

import argparse
from typing import Any

from tuner import api
from tuner.commands.common import add_data_dir, positive_int, print_json
from tuner.data.mining import MINING_SEED, SAMPLING
from tuner.errors import ConfigError, TunerError


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="mine hard negatives for (anchor, positive) pairs -> triplets",
                       description="For every anchor, take the corpus texts (every positive of the file, plus --corpus) "
                                   "that the model finds most similar, except its own positives, as negatives. The "
                                   "options mean what sentence-transformers' mine_hard_negatives options mean. The "
                                   "result is cached by model, texts and settings ($TUNER_CACHE/mined).")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="the model that ranks (default: all-MiniLM-L6-v2)")
    p.add_argument("--train", required=True, metavar="FILE", help="(anchor, positive) pairs: CSV/TSV/JSONL/Parquet")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="where the triplets go (.parquet, .csv, .tsv, .jsonl): anchor, positive, negative, "
                        "negative_2, ... one row per pair that got a negative")
    p.add_argument("--columns", default=None, metavar="NAME=COLUMN,...",
                   help="your column names for tuner's, e.g. anchor=question,positive=answer")
    p.add_argument("--corpus", default=None, metavar="FILE",
                   help="more candidate texts: a .txt (one a line) or a table with a 'text' column")
    p.add_argument("--num-negatives", type=_integer, default=1, help="negatives per pair (default: 1)")
    p.add_argument("--range-min", type=_integer, default=0,
                   help="skip the candidates ranked above this (default: 0, the most similar non-positive)")
    p.add_argument("--range-max", type=_integer, default=None,
                   help="candidates ranked below this only (default: range-min + num-negatives, x10 with a margin "
                        "or score bound)")
    p.add_argument("--margin", type=_number, default=None,
                   help="a negative's similarity is at most the positive's minus this (absolute_margin)")
    p.add_argument("--relative-margin", type=_number, default=None,
                   help="a negative's similarity is at most positive - |positive| x this (0.05: TopK-PercPos 95%%)")
    p.add_argument("--max-score", type=_number, default=None, help="a negative's similarity is at most this")
    p.add_argument("--min-score", type=_number, default=None, help="a negative's similarity is at least this")
    p.add_argument("--sampling", choices=SAMPLING, default="top",
                   help="top: the most similar candidates that pass; random: a seeded draw of them (default: top)")
    p.add_argument("--seed", type=_integer, default=MINING_SEED, help=f"seed of random sampling (default: {MINING_SEED})")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences per encoding batch (default: 64)")
    p.add_argument("--max-seq-length", type=positive_int, default=128, help="tokens per sentence (default: 128)")
    p.add_argument("--pooling", default=None, help="cls, cls_avg, avg, max, last or a token index (default: the model's)")
    p.add_argument("--prompt", default=None, help="template every sentence is put in, {text} where it goes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--cache-dir", default=None, help="the mining cache (default: $TUNER_CACHE/mined, ~/.cache/tuner/mined)")
    p.add_argument("--no-cache", action="store_true", help="mine again and keep nothing")
    p.add_argument("--scores", action="store_true", help="add the cosine columns score_positive, score_negative, ...")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = {k: getattr(args, k) for k in ("num_negatives", "range_min", "range_max", "margin", "relative_margin",
                                              "max_score", "min_score", "sampling", "seed")}
    try:
        mined = api.mine(args.model, args.train, args.out, corpus=args.corpus, columns=args.columns,
                     batch_size=args.batch_size, max_seq_length=args.max_seq_length, pooling=args.pooling,
                     prompt=args.prompt, device=args.device, data_dir=args.data_dir, cache=not args.no_cache,
                     cache_dir=args.cache_dir, scores=args.scores, **options)
    except ConfigError as exc:  # a mining option: name its flag
        raise TunerError(f"--{exc.key.replace('_', '-')} {exc.problem}") from None
    record = {"model": args.model, "train": args.train, "out": args.out, "settings": mined.settings.to_dict(),
              **mined.stats, "cache": str(mined.cache_file) if mined.cache_file else None,
              "from_cache": mined.from_cache}
    if args.json:
        print_json(record)
    else:
        print(summary(record))
    return 0


def summary(r: dict[str, Any]) -> str:
    """The short text summary: counts, then the similarity of positives and negatives."""
    s = r["settings"]
    bounds = [f"{k.replace('_', ' ')} {s[k]:g}" for k in ("margin", "relative_margin", "max_score", "min_score")
              if s[k] is not None]
    pos, neg, gap = r["positive_similarity"], r["negative_similarity"], r["positive_minus_first_negative"]

    def stat(x: dict) -> str:
        return "none" if x["mean"] is None else f"mean {x['mean']:.3f}, median {x['median']:.3f}, " \
                                               f"min {x['min']:.3f}, max {x['max']:.3f}"

    return "\n".join([
        f"mined with {r['model']}: ranks [{s['range_min']}, {s['range_max']}), {s['sampling']}"
        + (f", {', '.join(bounds)}" if bounds else ""),
        f"pairs {r['pairs']:,} ({r['anchors']:,} anchors), corpus {r['corpus']:,} texts",
        f"negatives mined {r['negatives_mined']:,} of {r['negatives_asked'] * r['pairs']:,} asked; pairs with fewer "
        f"than {r['negatives_asked']}: {r['pairs_with_fewer']:,} (none at all, left out: {r['pairs_without']:,})",
        f"cosine  positive: {stat(pos)}",
        f"        negative: {stat(neg)}",
        f"        positive - first negative: {stat(gap)}",
        f"wrote {r['triplet_rows']:,} rows to {r['out']}"
        + (f" ({'from the cache' if r['from_cache'] else 'cached'}: {r['cache']})" if r["cache"] else ""),
    ])
