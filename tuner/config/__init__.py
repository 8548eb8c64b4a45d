"""One description of a run: :class:`RunConfig`, the checks of its values, the CLI flags it generates.

Modules::

    _run.py     the RunConfig dataclass (every field: default, help text, study-file section) and the
                ``finetune`` flags generated from it
    _checks.py  checks of the setting values only a run config has (one-line :class:`ConfigError`s)

A setting whose rule belongs to another room is checked there, and RunConfig calls that check: loss
weights and temperatures in :mod:`tuner.losses.checks`, the prompt (:data:`PROMPT_SLOT`,
:func:`check_prompt`, re-exported here) in :mod:`tuner.models._decoder`, LoRA in
:mod:`tuner.models._lora`, pooling in :mod:`tuner.models._pooling`. :class:`ConfigError` lives in
:mod:`tuner.errors`.

Torch-free: the study parser and the CLI use it before any model loads.
"""
from tuner.config._run import (DEFAULT_MODEL, PRECISIONS, TASKS, RunConfig, add_arguments, field_names,
                               from_arguments, section_fields)
from tuner.errors import ConfigError
from tuner.models._decoder import PROMPT_SLOT, check_prompt

__all__ = ["DEFAULT_MODEL", "PRECISIONS", "PROMPT_SLOT", "TASKS", "ConfigError", "RunConfig", "add_arguments",
           "check_prompt", "field_names", "from_arguments", "section_fields"]
