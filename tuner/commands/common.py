"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

import pandas as pd

from tuner.errors import TunerError
from tuner.losses import LOSS_NAMES

_LOSS_ALIASES = {"cos_mse": "cos_mse", "cosine_mse": "cos_mse", "cos": "cos_mse", "cosine": "cos_mse",
                 "cosent": "cosent", "ibn": "ibn", "in_batch_negatives": "ibn", "angle": "angle"}


def parse_loss_map(text: str, flag: str) -> dict[str, float]:
    """``"cosent=1,ibn=0,angle=1"`` -> ``{"cosent": 1.0, "ibn": 0.0, "angle": 1.0}`` (one-line errors)."""
    result: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        if "=" not in item:
            raise TunerError(f"{flag} item '{item}' is not NAME=VALUE; write e.g. {flag} cosent=1,ibn=0,angle=1")
        name, value = (s.strip() for s in item.split("=", 1))
        key = _LOSS_ALIASES.get(name.lower())
        if key is None:
            raise TunerError(f"{flag}: unknown loss '{name}'; use {', '.join(LOSS_NAMES)}")
        try:
            number = float(value)
        except ValueError:
            raise TunerError(f"{flag}: value '{value}' for {name} is not a number") from None
        if not math.isfinite(number):
            raise TunerError(f"{flag}: value for {name} must be finite, got {value}")
        result[key] = number
    return result


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="folder with the layout of shared/data (default: $TUNER_DATA_DIR, then ../shared/data)")


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict(orient="records")
    return str(obj)


def format_table(df: pd.DataFrame, columns: list[str], scale: float = 100.0) -> str:
    """A plain text table; scores shown x100 with 2 decimals."""
    shown = df[columns].copy()
    for col in ("score", "pearson", "dev", "test"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v * scale:.2f}")
    return shown.to_string(index=False)
