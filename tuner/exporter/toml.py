"""A small TOML writer for the study files an export writes (and :mod:`tuner.api` hands to workers)."""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

__all__ = ["toml_dumps"]


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """TOML text of ``doc`` (str, int, float, bool, lists, nested tables); None values are left out."""
    lines: list[str] = []
    _toml_table(doc, [], lines)
    return "\n".join(lines).strip() + "\n"


def _toml_key(key: str) -> str:
    key = str(key)
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _toml_table(doc: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    tables = []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and not path:      # top-level tables; ranges inside them inline
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables:
        lines += ["", "[" + ".".join(_toml_key(k) for k in [*path, key]) + "]"]
        _toml_table(value, [*path, key], lines)

