"""scripts/compare_protocols.py on two hand-made exports: gains against each protocol's own zero-shot,
the gain lost on the disjoint split, significant rows, rank correlation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from compare_protocols import compare  # noqa: E402

ROWS = ["zero_shot", "cosent", "ibn", "angle"]


def export(folder: Path, protocol: str, zero: float, means: dict, p: dict) -> Path:
    folder.mkdir()
    values = np.array([[[zero], *[[means[r]] for r in ROWS[1:]]]])
    np.save(folder / "matrix.npy", values)
    detail = [{"model": "m", "loss": r, "dataset": "stsb", "mean": means[r], "n_seeds": 3, "marked": r == "cosent",
               "vs_zero_shot": {"difference": means[r] - zero, "ci95": [0, 0], "p_first_not_better": p[r]}}
              for r in ROWS[1:]]
    (folder / "matrix.json").write_text(json.dumps({
        "models": ["m"], "losses": ROWS, "loss_titles": ["Zero", "CoSENT", "IBN", "Angle"], "datasets": ["stsb"],
        "metric": "spearman", "protocol": protocol, "cells_detail": detail}))
    return folder


def test_gains_are_taken_against_each_protocols_own_zero_shot(tmp_path):
    seed = export(tmp_path / "s", "seed", 0.70, {"cosent": 0.76, "ibn": 0.74, "angle": 0.72},
                  {"cosent": 0.001, "ibn": 0.01, "angle": 0.2})
    dis = export(tmp_path / "d", "disjoint", 0.60, {"cosent": 0.62, "ibn": 0.615, "angle": 0.59},
                 {"cosent": 0.01, "ibn": 0.3, "angle": 0.9})
    record = compare(seed, dis)
    stsb = record["datasets"]["stsb"]
    assert stsb["seed"]["mean_gain"] == pytest.approx(0.04)  # (0.06 + 0.04 + 0.02) / 3
    assert stsb["disjoint"]["mean_gain"] == pytest.approx((0.02 + 0.015 - 0.01) / 3)
    assert stsb["gain_lost"] == pytest.approx(0.04 - (0.025 / 3))
    assert stsb["seed"]["rows_gaining_significantly"] == ["cosent", "ibn"]
    assert stsb["disjoint"]["rows_gaining_significantly"] == ["cosent"]
    assert stsb["rank_correlation"] == pytest.approx(1.0)
    assert stsb["seed"]["best_row"] == stsb["disjoint"]["best_row"] == "cosent"
    json.dumps(record, allow_nan=False)
