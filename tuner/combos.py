"""The loss-combination rows of the results matrix and their weights."""
from __future__ import annotations

from typing import Mapping

LOSS_ROWS = ("zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle",
             "cosent+ibn+angle")
FINETUNE_ROWS = LOSS_ROWS[1:]
ROW_TITLES = {
    "zero_shot": "Without Fine-Tuning",
    "cos_mse": "Default Cosine Similarity",
    "cosent": "CoSENT",
    "ibn": "In-Batch Negatives",
    "angle": "Angle",
    "cosent+ibn": "CoSENT+IBN",
    "cosent+angle": "CoSENT+Angle",
    "ibn+angle": "IBN+Angle",
    "cosent+ibn+angle": "CoSENT+IBN+Angle",
}
SEED_TAUS = {"cosent": 20.0, "ibn": 20.0, "angle": 1.0}


def weights_of_row(row: str) -> dict[str, float]:
    """``"cosent+angle"`` -> ``{"cosent": 1, "ibn": 0, "angle": 1}``; ``"cos_mse"`` -> all 0."""
    if row not in FINETUNE_ROWS:
        raise ValueError(f"unknown loss row {row!r}; use one of {', '.join(FINETUNE_ROWS)}")
    names = set() if row == "cos_mse" else set(row.split("+"))
    return {k: 1.0 if k in names else 0.0 for k in ("cosent", "ibn", "angle")}


def row_of_weights(weights: Mapping[str, float]) -> str:
    """The row a weight vector belongs to: the losses with weight > 0 (cos_mse when none)."""
    active = [k for k in ("cosent", "ibn", "angle") if float(weights.get(k, 0.0)) > 0]
    return "+".join(active) if active else "cos_mse"
