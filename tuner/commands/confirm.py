"""``tuner confirm``: the top K configurations of a study, re-run with N seeds beside baselines, and a
report that names a winner only when it is significantly better than the runner-up.

argparse -> :func:`tuner.api.confirm` -> print. The budget flags (``--epochs``, ``--max-steps``,
``--max-train-examples``, ``--max-eval-examples``) are ``finetune``'s, generated from
:class:`tuner.config.RunConfig`. See docs/confirm.md.
"""
from __future__ import annotations

import argparse

from tuner import api
from tuner.commands.common import add_storage_args, positive_int, print_json
from tuner.config import add_arguments, field_names, from_arguments
from tuner.exporter.confirm import format_report
from tuner.service._confirm_plan import BASELINES, BUDGET_FIELDS


def seed_list(text: str) -> list[int]:
    """argparse type for ``--seeds 42,43,44``."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integer seeds") from None


def baseline_list(text: str) -> list[str]:
    """argparse type for ``--baselines zero-shot,st-example`` (or ``none``)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baseline '{unknown[0]}'; use {', '.join(BASELINES)} or none")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("confirm", help="re-run a study's top K configurations with several seeds, with baselines",
                       description="Take the top K distinct configurations of a study (by dev value) and re-run "
                                   "each with every seed at a confirmation budget (default: the full training set, "
                                   "the full dev and test files, each configuration's own epochs), beside the "
                                   "zero-shot model and sentence-transformers' STS-B example. The runs form a study "
                                   "of their own (<study>-confirm) in the same storage: run the same command on "
                                   "several machines to share its cells, again to resume. Reports mean, std and "
                                   "95% interval per configuration, paired tests over seeds x test items (Holm), "
                                   "and a winner only when it is significantly better than the runner-up.")
    p.add_argument("--study", required=True, help="the study to confirm (its name in the storage)")
    add_storage_args(p, heartbeat=True)
    p.set_defaults(study_name=None)
    p.add_argument("--top", type=positive_int, required=True, metavar="K", help="how many configurations to confirm")
    p.add_argument("--seeds", type=seed_list, required=True, metavar="S1,S2,...",
                   help="training seeds every configuration and trained baseline runs with, e.g. 42,43,44")
    p.add_argument("--baselines", type=baseline_list, default=list(BASELINES), metavar="NAMES",
                   help=f"comma-separated: {', '.join(BASELINES)}, or none (default: both)")
    p.add_argument("--dataset", default=None,
                   help="only the configurations scored on this dataset (a grid study over several datasets)")
    p.add_argument("--on", default=None, metavar="DATASET",
                   help="train and score every configuration and baseline on this dataset (its train, dev and "
                        "test splits) instead of the searched one: does the answer transfer? The study is "
                        "<study>-confirm-on-<dataset>")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="train every configuration and baseline from this model (hub name, built-in name or "
                        "folder) instead of the searched one; the study is <study>-confirm-with-<model>")
    budget = p.add_argument_group("confirmation budget (finetune's flags; default: full files, own epochs)")
    add_arguments(budget, skip=[n for n in field_names() if n not in BUDGET_FIELDS])
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write confirm.json/.csv/.md, plots/confirm.png|svg and the winner's best_finetune.json here")
    p.add_argument("--save-model", action="store_true",
                   help="train the winner once more (its first seed) and save it to DIR/model in the "
                        "sentence-transformers format (needs --out)")
    p.add_argument("--report-only", action="store_true", help="report what has run; run no cell")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if visible, else cpu)")
    p.add_argument("--artifacts", default=None, help="folder for trial artifacts (default: none)")
    p.add_argument("--json", action="store_true", help="print the report as strict JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = {k: getattr(args, k) for k in BUDGET_FIELDS if k in vars(args)}
    parsed = from_arguments(argparse.Namespace(**given))
    budget = {k: getattr(parsed, k) for k in given}
    report = api.confirm(args.study, args.storage, top=args.top, seeds=args.seeds, budget=budget,
                         baselines=args.baselines, study_name=args.study_name, dataset=args.dataset,
                         on=args.on, model=args.model, device=args.device, out=args.out,
                         save_model=args.save_model, artifacts=args.artifacts,
                         heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                         run=not args.report_only)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
        for name, path in report.get("files", {}).items():
            print(f"{name}: {path}")
    if report["worker_exit_code"]:
        return int(report["worker_exit_code"])
    return 0 if report["complete"] or args.report_only else 1
