"""Machine-readable output is strict JSON: no NaN/Infinity tokens (jq and JavaScript reject them)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tuner.cli import main
from tuner.commands.common import json_safe, print_json


def strict_loads(text: str):
    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def test_strict_parser_rejects_nan():
    with pytest.raises(ValueError):
        strict_loads('{"pearson": NaN}')


def test_print_json_writes_null_for_nan(capsys):
    print_json({"a": float("nan"), "b": np.float32("inf"), "c": [np.float64("-inf"), np.int64(2), pd.NA],
                "d": pd.DataFrame({"x": [1.0, np.nan]}), "e": np.array([0.5, np.nan]), 3: "key"})
    payload = strict_loads(capsys.readouterr().out)
    assert payload == {"a": None, "b": None, "c": [None, 2, None], "d": [{"x": 1.0}, {"x": None}],
                       "e": [0.5, None], "3": "key"}


def test_json_safe_keeps_finite_values():
    assert json_safe({"x": 0.25, "y": True, "z": None, "s": "NaN"}) == {"x": 0.25, "y": True, "z": None, "s": "NaN"}
    assert math.isnan(float("nan")) and json_safe(float("nan")) is None


def test_cli_evaluate_json_classification_pearson_is_null(tiny_model_dir, tiny_data_dir, capsys):
    code = main(["evaluate", "--model", str(tiny_model_dir), "--datasets", "mr,sts12", "--data-dir",
                 str(tiny_data_dir), "--device", "cpu", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    assert "NaN" not in out
    payload = strict_loads(out)
    rows = {r["dataset"]: r for r in payload["results"]}
    assert rows["mr"]["pearson"] is None and rows["mr"]["metric"] == "accuracy"
    assert isinstance(rows["sts12"]["pearson"], float)


def test_cli_splits_json_is_strict(tiny_data_dir, capsys):
    assert main(["splits", "--dataset", "stsb,mr", "--protocol", "disjoint", "--data-dir", str(tiny_data_dir),
                 "--json"]) == 0
    payload = strict_loads(capsys.readouterr().out)
    assert [r["dataset"] for r in payload] == ["stsb", "mr"]
