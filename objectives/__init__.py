"""Study objectives: trial -> sampled config -> fine-tune -> evaluate -> record.

Thin by design: the training and scoring live in :mod:`tuner.engine._run`; what a trial records is
the contract in ``docs/trial-record.md``. :func:`get_objective` picks the one for a study's task.
"""
from __future__ import annotations

from typing import Any, Callable


def get_objective(task: str) -> Callable[..., float]:
    """``objective(trial, config, ctx) -> dev score`` (config: the trial's RunConfig) for ``task`` ('sts',
    'classification' or 'nli': train on NLI, score STS)."""
    if task == "sts":
        from objectives.sts import objective
    elif task == "classification":
        from objectives.classification import objective
    elif task == "nli":
        from objectives.nli import objective
    else:
        from tuner.errors import TunerError

        raise TunerError(f"unknown task '{task}'; use 'sts', 'classification' or 'nli'")
    return objective


__all__ = ["get_objective"]
