"""STS objective: fine-tune on the study's STS training set(s); the value is the mean dev Spearman
(cosine similarity vs gold score) over the eval sets. Dev and test Spearman per dataset are recorded."""
from __future__ import annotations

from typing import Any

from objectives.common import WorkerContext, run_objective
from tuner.config import RunConfig

TASK = "sts"


def objective(trial: Any, config: RunConfig, ctx: WorkerContext) -> float:
    return run_objective(trial, config, ctx, task=TASK)
