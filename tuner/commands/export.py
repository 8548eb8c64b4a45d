"""``tuner export``: a study's results matrix, tables and plots in one folder."""
from __future__ import annotations

import argparse
import json
import os

from tuner.commands.common import positive_int

#: Used when neither --storage nor $TUNER_STORAGE is given.
# TODO(dedupe): take the default from tuner.storage once it lands.
DEFAULT_STORAGE = "sqlite:///tuner.db"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a study's results matrix (.npy/.json), tables and plots",
        description="Read the study's COMPLETE trials once and write matrix.npy (models x 9 loss rows x datasets, "
                    "NaN where no complete trial) with matrix.json (labels, metric, split, protocol, trial numbers), "
                    "results.csv, results.md and plots/ (PNG + SVG). For non-grid studies also leaderboard.csv/.md, "
                    "best_finetune.json, best_study.toml and Optuna's plots. Where several trials fill one cell the "
                    "best dev score wins; test scores never choose.")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", default=None,
                   help=f"storage URL (default: $TUNER_STORAGE, then {DEFAULT_STORAGE})")
    p.add_argument("--out", required=True, help="output folder (created; files in it are replaced)")
    p.add_argument("--split", default="test", choices=("test", "dev"), help="scores that fill the matrix (default: test)")
    p.add_argument("--top-k", type=positive_int, default=10, help="leaderboard length for non-grid studies (default 10)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (faster)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=run)


def resolve_storage(arg: str | None) -> str:
    """TODO(dedupe): replace by tuner.storage's resolver once it lands."""
    return arg or os.environ.get("TUNER_STORAGE") or DEFAULT_STORAGE


def run(args: argparse.Namespace) -> int:
    import optuna

    from tuner.export import export_study, open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage(args.storage)
    study = open_study(args.study, url)
    result = export_study(study, args.out, split=args.split, storage_url=url, top_k=args.top_k,
                          plots=not args.no_plots)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    models, rows, datasets = result.shape
    print(f"exported study '{result.study}' ({result.matrix.n_trials} complete trials, {result.matrix.metric}, "
          f"{result.split} split): matrix {models} models x {rows} loss rows x {datasets} datasets, "
          f"{result.filled}/{models * rows * datasets} cells filled -> {result.out_dir}")
    if result.matrix.choices:
        print(f"{len(result.matrix.choices)} cell(s) had several trials: chose by dev score (see matrix.json)")
    if result.matrix.skipped:
        print(f"{len(result.matrix.skipped)} complete trial(s) fit no cell (see matrix.json: skipped_trials)")
    for key, path in result.files.items():
        print(f"  {key:16s} {path}")
    if result.plots:
        print(f"  {'plots':16s} {len(result.plots)} files in {result.out_dir / 'plots'}")
    for name, why in result.skipped_plots.items():
        print(f"  skipped optuna plot {name}: {why}")
    return 0
