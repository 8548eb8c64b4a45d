"""Unscored (anchor, positive) pairs and (anchor, positive, negative) triplets as training data (issue #24):
detected from the columns, renamed by --columns, read from CSV/JSONL/DataFrame/save_to_disk folders,
trained on by the losses that can, refused in one line by the ones that cannot."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import tuner
from _tiny import env_with_repo
from tuner.config import RunConfig
from tuner.data import load_dataset
from tuner.engine._prepare import shaped_train_data
from tuner.errors import ConfigError, TunerError


@pytest.fixture
def qa(tiny_data_dir, tmp_path):
    rows = pd.concat([pd.read_csv(tiny_data_dir / "sts" / "stsb" / f"{s}.tsv", sep="\t") for s in ("train", "test")])
    frame = pd.DataFrame({"question": rows["sentence1"].values, "answer": rows["sentence2"].values,
                          "wrong": rows["sentence2"].sample(frac=1, random_state=0).values})
    frame.to_csv(tmp_path / "qa.csv", index=False)
    frame.rename(columns={"question": "anchor", "answer": "positive", "wrong": "negative"}).to_json(
        tmp_path / "trip.jsonl", orient="records", lines=True)
    return tmp_path


def test_shapes_are_detected_and_columns_renamed(qa):
    assert load_dataset(str(qa / "trip.jsonl")).task == "triplets"
    pairs = load_dataset(str(qa / "qa.csv"), columns={"anchor": "question", "positive": "answer"})
    assert pairs.task == "pairs" and list(pairs.splits["all"].columns) == ["anchor", "positive"]
    frame = pd.DataFrame({"anchor": ["a", "b"], "positive": ["c", "d"]})
    assert load_dataset(frame).task == "pairs"


def test_a_save_to_disk_folder_is_read_with_its_splits(qa):
    datasets = pytest.importorskip("datasets")
    frame = pd.read_json(qa / "trip.jsonl", lines=True)
    datasets.DatasetDict({"train": datasets.Dataset.from_pandas(frame[:60]),
                          "test": datasets.Dataset.from_pandas(frame[60:])}).save_to_disk(str(qa / "saved"))
    ds = load_dataset(str(qa / "saved"))
    assert ds.task == "triplets" and {k: len(v) for k, v in ds.splits.items()} == {"train": 60, "test": len(frame) - 60}


@pytest.mark.parametrize("columns, fragment", [
    ({"anchor": "nope", "positive": "answer"}, "no column 'nope' (named by --columns)"),
    ({"anchor": "question", "positive": "question"}, "mapped twice"),
])
def test_bad_column_mappings_are_one_line(qa, columns, fragment):
    with pytest.raises(TunerError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(str(qa / "qa.csv"), columns=columns)
    with pytest.raises(ConfigError, match="not a column tuner reads"):
        RunConfig(columns={"query": "question"})


def test_triplets_give_scored_pairs_and_triplets_pairs_only_triplets():
    frame = pd.DataFrame({"anchor": ["a1", "a2"], "positive": ["p1", "p2"], "negative": ["n1", "n2"]})
    data = shaped_train_data(frame, "triplets", "t")
    assert data.pairs.text1 == ["a1", "a2", "a1", "a2"] and data.pairs.text2 == ["p1", "p2", "n1", "n2"]
    assert list(data.pairs.labels) == [1, 1, 0, 0] and data.triplets.negative == ["n1", "n2"]
    only = shaped_train_data(frame[["anchor", "positive"]], "pairs", "p")
    assert only.pairs is None and only.triplets.negative == [None, None] and "unscored" in only.missing["pairs"]


def test_fine_tune_on_pairs_and_triplets_and_refuse_losses_that_cannot(qa, tiny_model_dir, tiny_data_dir):
    common = dict(data_dir=str(tiny_data_dir), batch_size=8, max_seq_length=32, device="cpu", progress=False)
    out = tuner.finetune(str(tiny_model_dir), str(qa / "qa.csv"), "stsb", columns={"anchor": "question",
                         "positive": "answer"}, weights={"ibn": 1}, **common)
    assert set(out.scores["test"]) == {"stsb"} and out.metric == "spearman"
    out = tuner.finetune(str(tiny_model_dir), str(qa / "trip.jsonl"), "stsb", weights={"cosent": 1, "ibn": 1}, **common)
    assert set(out.scores["dev"]) == {"stsb"}
    base = [sys.executable, "-m", "tuner", "finetune", "--model", str(tiny_model_dir), "--train", str(qa / "qa.csv"),
            "--columns", "anchor=question,positive=answer", "--data-dir", str(tiny_data_dir), "--output",
            str(qa / "never")]
    for extra, fragment in [(["--eval", "stsb", "--weights", "cosent=1"], "cosent cannot train on; losses that can: ibn"),
                            (["--weights", "ibn=1"], "pass --eval")]:
        result = subprocess.run(base + extra, capture_output=True, text=True, env=env_with_repo(), timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert all(part in lines[0] for part in fragment.split("; ")), lines[0]
    assert not (qa / "never").exists()
