"""Checks and formatting of single run-setting values, for :mod:`tuner.config` (torch-free).

:class:`ConfigError` lives here so that the checks of new settings (:func:`check_prompt`,
:func:`check_lora`) can sit beside the generic ones without growing ``config.py``; ``tuner.config``
re-exports it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from tuner.errors import TunerError
from tuner.losses.registry import LOSSES, canonical_loss, parse_loss_values

#: Integer settings that may be left unset (None).
OPTIONAL_INTS = ("max_steps", "max_train_examples", "max_eval_examples", "eval_every")


class ConfigError(TunerError):
    """A bad run setting; ``key`` is the field's name."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key} {problem}" if problem.startswith("is ") else f"{key}: {problem}")



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


def check_loss_map(value: Any, key: str, taus: bool) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return parse_loss_values(value, key, taus=taus)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table of loss -> number, got {value!r}")
    out: dict[str, float] = {}
    for name, number in value.items():
        try:
            loss = canonical_loss(name)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if taus and not LOSSES[loss].has_tau:
            raise ConfigError(key, f"{loss} takes no temperature; only "
                                   f"{', '.join(n for n, s in LOSSES.items() if s.has_tau)} do")
        out[loss] = check_number(number, f"{key}.{loss}")
    return out


def check_number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(key, f"is {value}; use a finite number")
    return float(value)


def check_integer(value: Any, key: str) -> Optional[int]:
    if value is None and key in OPTIONAL_INTS:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    return value


#: What a prompt template must contain: where the sentence goes.
PROMPT_SLOT = "{text}"


def check_prompt(value: Any) -> Optional[str]:
    """A prompt template (``{text}`` marks the sentence), or None for no prompt (also ``""``/``"none"``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError("prompt", f"must be a text with {PROMPT_SLOT} where the sentence goes, got {value!r}")
    if not value.strip() or value.strip().lower() == "none":
        return None
    if PROMPT_SLOT not in value:
        raise ConfigError("prompt", f"{value!r} has no {PROMPT_SLOT}; write {PROMPT_SLOT} where the sentence goes, "
                                    "e.g. 'This sentence : \"{text}\" means in one word:\"'")
    return value


def check_lora(config: Any) -> None:
    """Normalise and check ``lora_r``/``lora_alpha``/``lora_dropout``/``lora_targets`` of a RunConfig in place."""
    config.lora_r = 0 if config.lora_r is None else check_integer(config.lora_r, "lora_r")
    if config.lora_r < 0:
        raise ConfigError("lora_r", f"is {config.lora_r}; use 0 (full fine-tuning) or a rank such as 8 or 16")
    if config.lora_alpha is not None:
        config.lora_alpha = check_number(config.lora_alpha, "lora_alpha")
        if config.lora_alpha <= 0:
            raise ConfigError("lora_alpha", f"is {config.lora_alpha:g}; use a positive number (scale = alpha / rank)")
    config.lora_dropout = check_number(config.lora_dropout, "lora_dropout")
    if not 0 <= config.lora_dropout < 1:
        raise ConfigError("lora_dropout", f"is {config.lora_dropout:g}; use a value in [0, 1)")
    targets = config.lora_targets
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in targets):
        raise ConfigError("lora_targets", f"must be a list of module names such as q_proj,v_proj, got {targets!r}")
    config.lora_targets = [t.strip() for t in targets]
