"""Study objectives: trial -> sampled config -> fine-tune -> evaluate -> record.

Thin by design: the training and scoring live in :mod:`tuner.engine`; what a trial records is the
contract in ``docs/trial-record.md``. Every task runs the same steps (:func:`objectives.common.run_objective`);
what differs is what it trains on and which dev score it maximises, one row per task in :data:`TASKS`.

Why a top-level package beside ``tuner/``: the objective is the one piece a user may swap (the
study service calls ``objective(trial, config, ctx) -> dev score`` and knows nothing else of it),
and worker processes import it by name on every host, so it is installed with the project
(``pyproject.toml``'s ``packages.find``), not read from a checkout.
"""
from __future__ import annotations

import functools
from typing import Callable

from objectives.common import run_objective
from tuner.errors import TunerError

#: task -> what its trials train on and the dev score they maximise (the trial's value).
TASKS = {
    "sts": "fine-tune on the study's STS training set(s); the value is the mean dev Spearman (cosine "
           "similarity vs gold score) over the eval sets; dev and test Spearman per dataset are recorded",
    "classification": "SentEval MR/CR/MPQA/SUBJ: fine-tune with each sentence paired with itself (the seed's "
                      "recipe); the value is the mean dev accuracy of a logistic regression fit on the frozen "
                      "embeddings of the protocol's train split; dev and test accuracy per dataset are recorded",
    "nli": "fine-tune on the study's NLI training set(s); the value is the STS-B dev Spearman (the selection "
           "set); the full official test Spearman of every STS eval set is recorded, with STS-B dev",
}


def get_objective(task: str) -> Callable[..., float]:
    """``objective(trial, config, ctx) -> dev score`` (config: the trial's RunConfig) for ``task``."""
    if task not in TASKS:
        raise TunerError(f"unknown task '{task}'; use {', '.join(repr(t) for t in TASKS)}")
    return functools.partial(run_objective, task=task)


__all__ = ["TASKS", "get_objective"]
