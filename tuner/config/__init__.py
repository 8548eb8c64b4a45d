"""One description of a run: :class:`RunConfig`, the checks of its values, the CLI flags it generates.

Modules::

    _run.py     the RunConfig dataclass (every field: default, help text, study-file section) and the
                ``finetune`` flags generated from it
    _checks.py  checks of single setting values (one-line :class:`ConfigError`s), shared by RunConfig
                and the study files' ``[search]`` tables

Torch-free: the study parser and the CLI use it before any model loads.
"""
from tuner.config._checks import PROMPT_SLOT, ConfigError, check_prompt
from tuner.config._run import (DEFAULT_MODEL, PRECISIONS, TASKS, RunConfig, add_arguments, field_names,
                               from_arguments, section_fields)

__all__ = ["DEFAULT_MODEL", "PRECISIONS", "PROMPT_SLOT", "TASKS", "ConfigError", "RunConfig", "add_arguments",
           "check_prompt", "field_names", "from_arguments", "section_fields"]
