"""``tuner init``: print a commented study file for the user's own data (:mod:`tuner.study.template`).

``optimize --train FILE [--eval FILE]`` writes the same file next to the storage and runs it
(:func:`tuner.study.template.write_study_for_data`), so it can be resumed and edited.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuner.commands.common import add_data_dir, add_data_study_args
from tuner.errors import TunerError
from tuner.study.template import study_text

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="print a study file for your own data",
                       description="Read your training (and eval) data, detect its task, and print a commented "
                                   "study file: the shipped study for that task with your files, model and trial "
                                   "count. Save it, edit it, run it with optimize --study FILE; or run "
                                   "optimize --train FILE --eval FILE, which writes it next to the storage.")
    add_data_study_args(p, required=True)
    add_data_dir(p)
    p.add_argument("--out", metavar="FILE", default=None, help="write the study here instead of printing it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name, text = study_text(args.train, args.eval, model=args.model, n_trials=args.n_trials, data_dir=args.data_dir)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TunerError(f"cannot write {out}: {exc.strerror or exc}; choose a writable --out path") from None
    print(f"study '{name}' written to {out}; run it with: python -m tuner optimize --study {out}", file=sys.stderr)
    return 0
