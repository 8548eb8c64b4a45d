"""Strict JSON for the files tuner writes: NaN and infinities become null (jq and JavaScript reject them)."""
from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any, Mapping

__all__ = ["json_safe", "dumps"]


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values: non-finite floats -> None, numpy scalars/arrays -> Python, paths -> str.

    Dict keys become strings as ``json.dumps`` would; anything else unknown becomes ``str(obj)``
    (what ``default=str`` did before).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, str) else str(json_safe(k))): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # a pandas DataFrame: its rows
        return json_safe(obj.to_dict(orient="records"))
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, pandas Series, torch tensors
        return json_safe(obj.tolist())
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    if _is_missing(obj):  # pd.NA, pd.NaT
        return None
    return str(obj)


def _is_missing(obj: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(obj))
    except (ImportError, TypeError, ValueError):
        return False


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(json_safe(obj), allow_nan=False, **kwargs)``: a NaN that slips through raises."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
