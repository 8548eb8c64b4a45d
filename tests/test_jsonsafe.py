"""Machine-readable output is strict JSON: NaN/Infinity become null, never a bare token (jq and
JavaScript reject them).

The helper (``tuner.jsonsafe``), the printed ``evaluate``/``splits`` JSON, a saved model's files
(``tuner.json`` with NaN scores), a trial's ``config.json`` artifact, and ``export --json`` with the
files the export writes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

import tuner.jsonsafe
from tuner.cli import main
from tuner.commands.common import print_json
from tuner.jsonsafe import dumps, json_safe

optuna.logging.set_verbosity(optuna.logging.WARNING)


def strict_loads(text: str) -> Any:
    def bad(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def test_strict_parser_rejects_nan():
    with pytest.raises(ValueError):
        strict_loads('{"pearson": NaN}')


def nasty_record() -> dict[str, Any]:
    """What a run can hand to a JSON writer: NaN (classification Pearson), infinities, numpy scalars."""
    return {"scores": {"test": {"mr": float("nan"), "stsb": np.float32(0.5)}},
            "pearson": [np.float64("nan"), float("inf"), -math.inf], "steps": np.int64(3),
            "output": Path("runs/m"), "seeds": (1, 2)}


def test_helper_maps_non_finite_to_null():
    assert strict_loads(dumps(nasty_record())) == {
        "scores": {"test": {"mr": None, "stsb": 0.5}}, "pearson": [None, None, None], "steps": 3,
        "output": "runs/m", "seeds": [1, 2]}
    assert json_safe({1: np.array([0.25, np.nan])}) == {"1": [0.25, None]}


def test_dumps_refuses_a_nan_that_slips_past_json_safe(monkeypatch):
    monkeypatch.setattr(tuner.jsonsafe, "json_safe", lambda obj: obj)  # as if json_safe missed one
    with pytest.raises(ValueError):
        dumps({"pearson": float("nan")})


def test_saved_model_files_are_strict_json(tiny_model_dir: Path, tmp_path: Path):
    from tuner.models._encoder import load_encoder, save_encoder

    out = save_encoder(load_encoder(str(tiny_model_dir), pooling="cls_avg", device="cpu"), tmp_path / "m",
                       {"max_seq_length": 16, **nasty_record()})
    record = strict_loads((out / "tuner.json").read_text())
    assert record["scores"]["test"] == {"mr": None, "stsb": 0.5} and record["pearson"] == [None, None, None]
    assert record["steps"] == 3 and record["output"] == "runs/m" and record["pooling"] == "cls_avg"
    for name in ("sentence_bert_config.json", "modules.json", "1_Pooling/config.json", "2_Dense/config.json"):
        strict_loads((out / name).read_text())


def test_trial_config_artifact_is_strict_json(tmp_path: Path):
    from optuna.artifacts import FileSystemArtifactStore

    from tuner.storage._artifacts import upload_trial_artifacts

    (tmp_path / "artifacts").mkdir()
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    trial = optuna.create_study().ask()
    ids = upload_trial_artifacts(store, trial, losses=[], parts=None, config=nasty_record())
    assert len(ids) == 1
    config = strict_loads((tmp_path / "artifacts" / ids[0]).read_text())
    assert config["scores"]["test"]["mr"] is None and config["pearson"] == [None, None, None]


def test_cli_export_json_and_its_files_are_strict(tmp_path: Path, capsys):
    from test_export import make_grid_study

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    make_grid_study(storage)  # cells without a trial are NaN in the matrix
    out = tmp_path / "export"
    assert main(["export", "--study", "grid", "--storage", storage, "--out", str(out), "--json", "--no-plots"]) == 0
    summary = strict_loads(capsys.readouterr().out)
    assert summary["filled_cells"] < summary["cells"]
    written = sorted(out.glob("*.json"))
    assert [p.name for p in written] == ["matrix.json"]
    for path in written:
        strict_loads(path.read_text())


def test_print_json_writes_null_for_nan(capsys):
    print_json({"a": float("nan"), "b": np.float32("inf"), "c": [np.float64("-inf"), np.int64(2), pd.NA],
                "d": pd.DataFrame({"x": [1.0, np.nan]}), "e": np.array([0.5, np.nan]), 3: "key"})
    payload = strict_loads(capsys.readouterr().out)
    assert payload == {"a": None, "b": None, "c": [None, 2, None], "d": [{"x": 1.0}, {"x": None}],
                       "e": [0.5, None], "3": "key"}


def test_json_safe_keeps_finite_values():
    assert json_safe({"x": 0.25, "y": True, "z": None, "s": "NaN"}) == {"x": 0.25, "y": True, "z": None, "s": "NaN"}
    assert json_safe(float("nan")) is None and json_safe(np.float32("-inf")) is None
    assert json_safe([1.5, pd.NA, np.int64(7)]) == [1.5, None, 7]


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
