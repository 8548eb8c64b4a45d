"""``tuner export``: a study's results matrix, tables and plots in one folder."""
from __future__ import annotations

import argparse
import os

from tuner.commands.common import positive_int, print_json
from tuner.study import load_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a study's results matrix (.npy/.json), tables and plots",
        description="Read the study's COMPLETE trials once and write matrix.npy (models x loss rows x datasets, "
                    "NaN where no complete trial; rows: the seed's 9, then any other combination of losses that were "
                    "on, cosine-MSE included) with matrix.json (labels, rows rule, metric, split, protocol, trial "
                    "numbers), "
                    "results.csv, results.md and plots/ (PNG + SVG). For non-grid studies also leaderboard.csv/.md, "
                    "best_finetune.json, best_study.toml and Optuna's plots. Where several trials fill one cell the "
                    "best dev score wins; test scores never choose.")
    p.add_argument("--study", required=True,
                   help="study name in the storage (a study file path/.toml also works: its name is used)")
    p.add_argument("--storage", default=None,
                   help="storage URL: sqlite:///tuner.db, postgresql://user:pass@host/db, mysql://user:pass@host/db "
                        "(default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--out", required=True, help="output folder (created; files in it are replaced)")
    p.add_argument("--split", default="test", choices=("test", "dev"), help="scores that fill the matrix (default: test)")
    p.add_argument("--top-k", type=positive_int, default=10, help="leaderboard length for non-grid studies (default 10)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (faster)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=run)


def study_name(text: str) -> str:
    """``--study``: a name as stored, or a study file (its ``name``, default the file stem)."""
    if text.endswith(".toml") or os.sep in text:
        return load_spec(text).name
    return text


def run(args: argparse.Namespace) -> int:
    from tuner.exporter import export_study, open_study

    study, handle = open_study(study_name(args.study), args.storage)
    try:
        result = export_study(study, args.out, split=args.split, storage_url=handle.url, top_k=args.top_k,
                              plots=not args.no_plots)
    finally:
        handle.close()
    if args.json:
        print_json(result.to_dict())
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
    for name, why in result.skipped_files.items():
        print(f"  not written: {name}: {why}")
    for name, why in result.skipped_plots.items():
        print(f"  skipped optuna plot {name}: {why}")
    return 0
