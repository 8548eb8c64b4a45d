"""SentEval classification objective (MR/CR/MPQA/SUBJ): fine-tune with each sentence paired with
itself (the seed's recipe); the value is the mean dev accuracy of a logistic regression fit on the
frozen embeddings of the protocol's train split. Dev and test accuracy per dataset are recorded."""
from __future__ import annotations

from typing import Any

from objectives.common import WorkerContext, run_objective
from tuner.config import RunConfig

TASK = "classification"


def objective(trial: Any, config: RunConfig, ctx: WorkerContext) -> float:
    return run_objective(trial, config, ctx, task=TASK)
