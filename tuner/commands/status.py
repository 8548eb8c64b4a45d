"""``tuner status``: trial counts by state, grid coverage, best value and params, running trials.

argparse -> :func:`tuner.service._status.read_status` -> print.
"""
from __future__ import annotations

import argparse

from tuner.commands.common import add_storage_args, print_json
from tuner.service._status import format_status, read_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a study's progress, best trial and running trials",
                       description="Counts of trials by state, grid coverage (cells complete / total, duplicates), "
                                   "finished / total with elapsed time, mean trial time and an ETA (JSON: timing), "
                                   "the best value and its params, and the running trials with their worker "
                                   "(host:pid), age and last step / dev score.")
    p.add_argument("--study", required=True, help="study name from studies/ or a .toml path")
    add_storage_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    st = read_status(args.study, args.storage, args.study_name)
    if args.json:
        print_json(st)
    else:
        print(format_status(st))
    return 0
