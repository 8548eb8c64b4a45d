"""A loss is one file + one registry line: a toy loss, registered by a plugin module, runs in a tiny
grid study (``optimize`` with worker processes) and shows up in the export's matrix, tables and plots."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _tiny import env_with_repo, write_grid_study

TESTS = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _tuner(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = env_with_repo({"TUNER_PLUGINS": "_toy_loss"})
    env["PYTHONPATH"] = f"{TESTS}:{env['PYTHONPATH']}"
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_plugin_loss_runs_in_a_grid_study_and_reaches_the_export(tmp_path, tiny_model_dir, tiny_data_dir):
    study = write_grid_study(tmp_path, "toy-grid", tiny_model_dir, tiny_data_dir,
                             losses=("cosent", "toy", "cosent+toy"), datasets=("stsb",))
    storage = f"sqlite:///{tmp_path / 'toy.db'}"
    run = _tuner(["optimize", "--study", str(study), "--storage", storage, "--workers", "1", "--no-artifacts"],
                 tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "export"
    exported = _tuner(["export", "--study", str(study), "--storage", storage, "--out", str(out)], tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    matrix = json.loads((out / "matrix.json").read_text())
    rows = matrix["losses"]
    assert rows[:9] == ["zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle",
                        "cosent+ibn+angle"]
    assert rows[9:] == ["toy", "cosent+toy"]  # new rows after the seed's, by size
    assert "Toy" in matrix["loss_titles"] and "CoSENT+Toy" in matrix["loss_titles"]
    values = np.load(out / "matrix.npy")
    assert values.shape == (1, 11, 1)
    assert np.isfinite(values[0, [0, 2, 9, 10], 0]).all()  # zero-shot and the three cells that ran
    assert np.isnan(values[0, [1, 3, 4, 5, 6, 7, 8], 0]).all()  # seed rows this grid did not run
    table = (out / "results.md").read_text()
    assert "| CoSENT+Toy |" in table and "| Toy |" in table
    assert any(p.name.startswith("heatmap") for p in (out / "plots").iterdir())
    # without the plugin the study's rows are unknown losses: one line, not a traceback
    bare = subprocess.run([sys.executable, "-m", "tuner", "export", "--study", str(study), "--storage", storage,
                           "--out", str(tmp_path / "bare")], cwd=tmp_path, env=env_with_repo(), capture_output=True,
                          text=True, timeout=600)
    assert bare.returncode == 2 and "Traceback" not in bare.stderr
    assert bare.stderr.count("\n") == 1 and "unknown loss 'toy'" in bare.stderr
