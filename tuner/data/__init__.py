"""Datasets: built-in STS / SentEval sets, custom files, validation and evaluation splits.

>>> from tuner.data import load_dataset, protocol_splits
>>> ds = load_dataset("stsb")                       # from shared/data, else the HF hub
>>> parts = protocol_splits(ds, "standard", seed=42)  # {"train", "dev", "test"}
"""
from __future__ import annotations

from .readers import SUPPORTED_SUFFIXES, load_builtin, load_dataset, read_table
from .registry import (
    BUILTIN_DATASETS,
    CLASSIFICATION_DATASETS,
    DEFAULT_SCORE_RANGE,
    HUB_IDS,
    SCORE_RANGES,
    STS_DATASETS,
    TASKS,
    Dataset,
    canonical_name,
    is_data_dir,
    resolve_data_dir,
    task_of,
)
from .splits import PROTOCOLS, protocol_splits, subsample
from .validate import (
    CLASSIFICATION_COLUMNS,
    STS_COLUMNS,
    check_min_rows,
    validate_classification,
    validate_sts,
)

__all__ = [
    "BUILTIN_DATASETS",
    "CLASSIFICATION_COLUMNS",
    "CLASSIFICATION_DATASETS",
    "DEFAULT_SCORE_RANGE",
    "Dataset",
    "HUB_IDS",
    "PROTOCOLS",
    "SCORE_RANGES",
    "STS_COLUMNS",
    "STS_DATASETS",
    "SUPPORTED_SUFFIXES",
    "TASKS",
    "canonical_name",
    "check_min_rows",
    "is_data_dir",
    "load_builtin",
    "load_dataset",
    "protocol_splits",
    "read_table",
    "resolve_data_dir",
    "subsample",
    "task_of",
    "validate_classification",
    "validate_sts",
]
