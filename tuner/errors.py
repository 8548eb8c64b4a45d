"""The exception types users see, and the two generic value checks that raise the keyed one.

Every `TunerError` message is a single line that says what is wrong and how to fix it.
The CLI prints it as ``error: <message>`` and exits with status 2, without a traceback.

:class:`ConfigError` (a bad setting, naming its key) and :func:`check_number` / :func:`check_integer`
live here, below every room, so that the room that owns a rule can raise it without importing
:mod:`tuner.config`: the loss registry (weights, temperatures), :mod:`tuner.models._lora` (LoRA
settings), :mod:`tuner.models._decoder` (prompts). ``tuner.config`` re-exports :class:`ConfigError`.
"""
from __future__ import annotations

import math
from typing import Any


class TunerError(Exception):
    """A user-facing error: bad input, missing data, unreachable storage, ...

    The message must be one line naming the offending file/column/row/key/flag and
    saying how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Collapse accidental newlines so the CLI always prints exactly one line.
        super().__init__(" ".join(str(message).split()))


class ConfigError(TunerError):
    """A bad run setting; ``key`` is the field's name."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key} {problem}" if problem.startswith("is ") else f"{key}: {problem}")


def check_number(value: Any, key: str) -> float:
    """``value`` as a finite float, else :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(key, f"is {value}; use a finite number")
    return float(value)


def check_integer(value: Any, key: str) -> int:
    """``value`` as an int (``8.0`` counts as 8), else :class:`ConfigError` naming ``key``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    return value
