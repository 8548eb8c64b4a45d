"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import ipaddress
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.jsonsafe import json_safe  # noqa: F401  (commands import it from here)
from tuner.service._orchestrate import default_grace_period, default_heartbeat_interval
from tuner.storage._urls import dialect_of, resolve_url, sqlite_path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def port_number(text: str) -> int:
    """argparse type for ``--port``: a TCP port, 1 to 65535 (the OS would take 70000 as 70000 mod 65536)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number; use 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range; use 1 to 65535")
    return value


def add_storage_args(p: argparse.ArgumentParser, heartbeat: bool = False) -> None:
    """``--storage``, ``--study-name`` and (``heartbeat``) ``--heartbeat-interval``/``--grace-period``."""
    p.add_argument("--storage", default=None,
                   help="storage URL: sqlite:///tuner.db (default), postgresql://user:pass@host/db, "
                        "mysql://user:pass@host/db, grpc://host:port or grpcs://host:port (a storage-proxy; "
                        "grpcs: $TUNER_PROXY_CA and $TUNER_PROXY_TOKEN) (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
    p.add_argument("--study-name", default=None,
                   help="name of the study in the storage (default: the study file's name)")
    if heartbeat:
        p.add_argument("--heartbeat-interval", type=positive_int, default=default_heartbeat_interval(),
                       help="seconds between a running trial's heartbeats (default 10; $TUNER_HEARTBEAT_INTERVAL)")
        p.add_argument("--grace-period", type=positive_int, default=default_grace_period(),
                       help="seconds without heartbeat after which a trial's worker counts as dead and its trial "
                            "is failed and re-run (default 30; $TUNER_GRACE_PERIOD)")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="folder with the layout of shared/data (default: $TUNER_DATA_DIR, then ../shared/data)")


def print_json(payload: Any) -> None:
    """Print ``payload`` as strict JSON: NaN and infinities become null (jq and JavaScript reject NaN)."""
    print(json.dumps(json_safe(payload), indent=2, allow_nan=False))


def format_table(df: pd.DataFrame, columns: list[str], scale: float = 100.0) -> str:
    """A plain text table; scores shown x100 with 2 decimals."""
    shown = df[columns].copy()
    for col in ("score", "pearson", "dev", "test"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v * scale:.2f}")
    return shown.to_string(index=False)


DATA_HELP = {
    "train": "your training data: a CSV/TSV/JSONL/Parquet file of scored pairs (sentence1, sentence2, score), "
             "labelled sentences (sentence, label) or NLI rows (premise, hypothesis, label), or a built-in name",
    "eval": "the set trials are selected (dev) and reported (test) on (default: the training file's own splits; "
            "NLI: the seven STS sets)",
    "model": "the model to fine-tune (default: the shipped study's, all-MiniLM-L6-v2)",
    "n_trials": "trials in the study (default: the shipped study's)",
}


def add_data_study_args(p: argparse.ArgumentParser, required: bool) -> None:
    """``--train``/``--eval``/``--model``/``--n-trials`` (``init``; ``optimize`` without ``--study``)."""
    p.add_argument("--train", metavar="FILE", required=required, default=None, help=DATA_HELP["train"])
    p.add_argument("--eval", metavar="FILE", default=None, help=DATA_HELP["eval"])
    p.add_argument("--model", default=None, help=DATA_HELP["model"])
    p.add_argument("--n-trials", type=positive_int, default=None, help=DATA_HELP["n_trials"])


def study_folder_for(storage: "str | None") -> Path:
    """Where ``optimize --train`` writes its study file: an SQLite database's folder, else the current one."""
    url = resolve_url(storage)
    db = sqlite_path(url) if dialect_of(url) == "sqlite" else None
    return db.parent if db is not None else Path.cwd()
