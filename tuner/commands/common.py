"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

import pandas as pd


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_storage_args(p: argparse.ArgumentParser, heartbeat: bool = False) -> None:
    """``--storage``, ``--study-name`` and (``heartbeat``) ``--heartbeat-interval``/``--grace-period``."""
    from tuner.orchestrate import default_grace_period, default_heartbeat_interval

    p.add_argument("--storage", default=None,
                   help="storage URL: sqlite:///tuner.db (default), postgresql://user:pass@host/db, "
                        "mysql://user:pass@host/db (default: $TUNER_STORAGE, else sqlite:///tuner.db)")
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
    import ipaddress

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


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as None, numpy scalars/arrays and DataFrames as plain Python.

    Dict keys become strings as ``json.dumps`` would; anything else unknown becomes ``str(obj)``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(json_safe(k))): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return json_safe(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return json_safe(obj.tolist())
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return json_safe(obj.tolist())
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    try:
        if pd.isna(obj):  # pd.NA, pd.NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(obj)


def format_table(df: pd.DataFrame, columns: list[str], scale: float = 100.0) -> str:
    """A plain text table; scores shown x100 with 2 decimals."""
    shown = df[columns].copy()
    for col in ("score", "pearson", "dev", "test"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v * scale:.2f}")
    return shown.to_string(index=False)
