"""Checks and formatting of single run-setting values, for :mod:`tuner.config` (torch-free).

The checks of a setting live with the room that owns its rule, and :class:`RunConfig` calls them:
loss weights and temperatures in :mod:`tuner.losses.checks` (against the loss registry), the
prompt in :mod:`tuner.models._decoder`, LoRA in :mod:`tuner.models._lora`, pooling in
:mod:`tuner.models._pooling`. :class:`ConfigError` and the generic number checks live in
:mod:`tuner.errors`, below all of them; this module keeps the checks only a run config has.
"""
from __future__ import annotations

from typing import Any, Optional

from tuner.errors import ConfigError, check_integer

#: Integer settings that may be left unset (None).
OPTIONAL_INTS = ("max_steps", "max_train_examples", "max_eval_examples", "eval_every", "mine_range_max")


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else f"{value:g}"
    return str(value)


def fmt_default(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={fmt_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ",".join(value) or "none"
    return "none" if value is None else fmt_value(value)


def check_text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def check_names(value: Any, key: str, allow_empty: bool) -> list[str]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(key, f"must be a list of dataset names or files, got {value!r}")
    if not value and not allow_empty:
        raise ConfigError(key, "is empty; name at least one dataset, e.g. stsb")
    return [v.strip() for v in value]


def check_int_setting(value: Any, key: str) -> Optional[int]:
    """An integer setting; None where the setting may be left unset (:data:`OPTIONAL_INTS`)."""
    if value is None and key in OPTIONAL_INTS:
        return None
    return check_integer(value, key)
