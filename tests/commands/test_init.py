"""A study on one's own data without writing TOML: ``tuner init`` and ``optimize --train/--eval`` (issue #24)."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from _tiny import env_with_repo
from tuner.errors import TunerError
from tuner.study import load_spec
from tuner.study.template import study_text


def cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, env=env_with_repo(), text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def own_files(tmp_path, tiny_data_dir) -> dict[str, Path]:
    """The tiny STS-B split as a user's CSV (train) and JSONL (eval), and labelled sentences as Parquet."""
    train = pd.concat([pd.read_csv(tiny_data_dir / "sts" / "stsb" / f"{split}.tsv", sep="\t")
                       for split in ("train", "test")], ignore_index=True)  # 96 rows: a 32-row batch after the splits
    dev = pd.read_csv(tiny_data_dir / "sts" / "stsb" / "dev.tsv", sep="\t")
    paths = {"train": tmp_path / "my_pairs.csv", "eval": tmp_path / "my_eval.jsonl",
             "labelled": tmp_path / "reviews.parquet"}
    train.to_csv(paths["train"], index=False)
    dev.to_json(paths["eval"], orient="records", lines=True)
    pd.DataFrame({"sentence": list(train["sentence1"]), "label": [i % 2 for i in range(len(train))]}).to_parquet(
        paths["labelled"])
    return paths


def test_init_writes_the_shipped_study_for_the_task_with_the_users_data(own_files, tmp_path):
    name, text = study_text(own_files["train"], own_files["eval"], model="my-model", n_trials=5)
    assert name == "my_pairs-sts"
    raw = tomllib.loads(text)
    assert raw["task"] == "sts" and raw["models"] == ["my-model"] and raw["n_trials"] == 5
    assert raw["data"] == {"train": [str(own_files["train"].resolve())], "eval": [str(own_files["eval"].resolve())]}
    shipped = tomllib.loads((Path(__file__).resolve().parents[2] / "studies" / "sts.toml").read_text())
    assert raw["search"] == shipped["search"] and raw["sampler"] == shipped["sampler"]  # the one owner of the space
    assert "# train  " in text and "rows all 96" in text and "# eval   " in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.task == "sts" and spec.n_trials == 5

    _, labelled = study_text(own_files["labelled"])
    raw = tomllib.loads(labelled)
    assert raw["task"] == "classification" and raw["data"]["eval"] == raw["data"]["train"]


def test_init_bad_input_is_one_line_and_writes_nothing(own_files, tmp_path):
    out = tmp_path / "study.toml"
    for args, expected in [
        (["--train", str(tmp_path / "missing.csv")], "file not found"),
        (["--train", str(own_files["train"]), "--eval", str(own_files["labelled"])],
         "holds classification data but"),
    ]:
        result = cli(["init", *args, "--out", str(out)], tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
        assert not out.exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence1,sentence2,score\n")
    with pytest.raises(TunerError, match="empty|no rows"):
        study_text(empty)


@pytest.mark.slow
def test_optimize_train_eval_writes_the_study_beside_the_storage_runs_and_resumes(own_files, tmp_path,
                                                                                   tiny_model_dir):
    db = tmp_path / "runs" / "tuner.db"
    db.parent.mkdir()
    args = ["optimize", "--train", str(own_files["train"]), "--eval", str(own_files["eval"]),
            "--model", str(tiny_model_dir), "--n-trials", "2", "--storage", f"sqlite:///{db}", "--no-artifacts",
            "--json"]
    first = cli(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    study_file = db.parent / "my_pairs-sts.toml"
    assert study_file.is_file() and f"written to {study_file}" in first.stderr
    status = json.loads(first.stdout)
    assert status["counts"]["COMPLETE"] + status["counts"].get("PRUNED", 0) == 2

    again = cli(args, tmp_path)  # the same command: the same file, nothing new to run
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["counts"] == status["counts"]

    study_file.write_text(study_file.read_text().replace("n_trials = 2", "n_trials = 3"))  # the user edits it
    edited = cli(args, tmp_path)
    assert edited.returncode == 2 and "exists with other settings" in edited.stderr
    assert "n_trials = 3" in study_file.read_text()  # kept, not overwritten

    both = cli(["optimize", "--study", str(study_file), "--train", str(own_files["train"])], tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
