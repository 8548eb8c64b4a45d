"""NLI-transfer objective (task ``nli``): fine-tune on the study's NLI training set(s); the value is
the STS-B dev Spearman (the selection set); the full official test Spearman of every STS eval set
(default: all seven) is recorded, with STS-B dev, as ``scores.<split>.<dataset>``."""
from __future__ import annotations

from typing import Any

from objectives.common import WorkerContext, run_objective
from tuner.config import RunConfig

TASK = "nli"


def objective(trial: Any, config: RunConfig, ctx: WorkerContext) -> float:
    return run_objective(trial, config, ctx, task=TASK)
