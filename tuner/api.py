"""The Python API: the same operations as the CLI, returning pandas / Optuna objects.

The CLI subcommands are thin layers over these functions.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from tuner.engine import DataSpec, FinetuneOutcome, evaluate_model, run_finetune
from tuner.errors import TunerError
from tuner.losses import DEFAULT_TAUS
from tuner.train import TrainConfig

_BUDGET_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {"weights", "taus", "pooling"}


def evaluate(model: Any = "all-MiniLM-L6-v2", datasets: "DataSpec | Sequence[DataSpec]" = "stsb", *,
             pooling: "str | int | None" = None, split: str = "test", protocol: Optional[str] = None,
             classification_protocol: Optional[str] = None, data_dir: "str | os.PathLike | None" = None,
             batch_size: int = 64, max_seq_length: int = 128, device: Optional[str] = None) -> pd.DataFrame:
    """Score a model (hub id, local folder or a loaded :class:`tuner.models.Encoder`) on datasets.

    ``datasets``: built-in names (``"stsb"``, ``"sts12,sts13"``, ``"MR"``…), file paths or
    DataFrames with ``sentence1, sentence2, score`` (STS) or ``sentence, label`` (classification).
    Returns one row per dataset: ``dataset, task, split, metric, score, pearson, n, protocol, …``
    (scores in 0..1). Same as ``tuner evaluate``.
    """
    return evaluate_model(model, datasets, pooling=pooling, split=split, protocol=protocol,
                          classification_protocol=classification_protocol, data_dir=data_dir,
                          batch_size=batch_size, max_seq_length=max_seq_length, device=device)


def finetune(model: Any = "all-MiniLM-L6-v2", train: "DataSpec | Sequence[DataSpec]" = "stsb",
             eval: "DataSpec | Sequence[DataSpec] | None" = None, *, weights: Optional[Mapping[str, float]] = None,
             taus: Optional[Mapping[str, float]] = None, pooling: "str | int | None" = None,
             output: "str | os.PathLike | None" = None, protocol: str = "standard",
             data_dir: "str | os.PathLike | None" = None, max_train_examples: Optional[int] = None,
             device: Optional[str] = None, progress: bool = True, **budget: Any) -> FinetuneOutcome:
    """Fine-tune ``model`` with ``sum(weights[k] * loss_k)`` and score dev and test.

    ``weights`` keys: ``cos_mse, cosent, ibn, angle`` (all 0 / None = cosine-MSE). ``budget`` takes
    any :class:`tuner.train.TrainConfig` field: ``lr, epochs, max_steps, batch_size,
    max_seq_length, warmup_ratio, seed, ibn_positive_threshold, precision, …``.
    Returns a :class:`tuner.engine.FinetuneOutcome`: ``.scores["dev"|"test"][dataset]``,
    ``.dev_score``, ``.test_score``, ``.output`` (saved folder when ``output`` is given), ``.train``.
    Same as ``tuner finetune``.
    """
    unknown = sorted(set(budget) - _BUDGET_KEYS)
    if unknown:
        raise TunerError(f"unknown finetune option(s) {', '.join(unknown)}; use any of {', '.join(sorted(_BUDGET_KEYS))}")
    config = TrainConfig(weights=dict(weights or {}), taus={**DEFAULT_TAUS, **dict(taus or {})}, pooling=pooling, **budget)
    return run_finetune(model, train, eval, config, protocol=protocol, data_dir=data_dir,
                        max_train_examples=max_train_examples, output=output, device=device, progress=progress)
