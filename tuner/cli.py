"""``python -m tuner``: argparse subcommands only.

Each subcommand lives in ``tuner/commands/<name>.py`` with ``register(subparsers)``; this module
wires them up and turns a :class:`~tuner.errors.TunerError` into one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn, Optional, Sequence

from tuner.errors import TunerError

# Order shown in --help.
COMMANDS = (
    "evaluate",
    "finetune",
    "mine",
    "export",
    "plot",
    "splits",
    "studies",
    "init",
    "optimize",
    "status",
    "confirm",
    "dashboard",
    "worker",
    "storage-proxy",
    "slurm",
)


class _UsageError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: tuner optimize: ...; see --help``), exit 2."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tuner",
        description="Hyperparameter optimisation for fine-tuning sentence-embedding models (Optuna).",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show library logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"tuner.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except TunerError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return TunerError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
