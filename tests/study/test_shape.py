"""A study's search space fits its training data: losses = "any" over unscored pairs draws ibn only."""
from __future__ import annotations

import optuna
import pandas as pd
import pytest

from tuner.data.shapes import file_shape, header_columns
from tuner.study import StudySpec
from tuner.study.parse import parse_spec


@pytest.fixture
def files(tmp_path):
    pairs = pd.DataFrame({"question": [f"q{i}" for i in range(40)], "answer": [f"a{i}" for i in range(40)]})
    pairs.to_csv(tmp_path / "qa.csv", index=False)
    pairs.rename(columns={"question": "anchor", "answer": "positive"}).to_csv(tmp_path / "pairs.tsv", sep="\t",
                                                                                index=False)
    trip = pairs.rename(columns={"question": "anchor", "answer": "positive"}).assign(negative="n")
    trip.to_json(tmp_path / "trip.jsonl", orient="records", lines=True)
    trip.to_parquet(tmp_path / "trip.parquet")
    return tmp_path


def test_shapes_from_the_header_alone(files):
    assert header_columns(files / "qa.csv") == ["question", "answer"]
    assert file_shape(files / "qa.csv") is None
    assert file_shape(files / "qa.csv", {"anchor": "question", "positive": "answer"}) == "pairs"
    assert file_shape(files / "pairs.tsv") == "pairs"
    assert file_shape(files / "trip.jsonl") == file_shape(files / "trip.parquet") == "triplets"
    assert file_shape(files / "missing.csv") is None


def study(folder, train: str, extra_search: str = "", train_table: str = "") -> StudySpec:
    text = f'''
task = "sts"
models = ["all-MiniLM-L6-v2"]
sampler = "tpe"
n_trials = 4
[data]
train = ["{train}"]
eval = ["stsb"]
[train]
{train_table}
[search]
losses = "any"
w_ibn = [0.1, 1.0]
w_cosent = [0.1, 1.0]
tau_ibn = [5.0, 50.0]
{extra_search}
'''
    import tomllib

    path = folder / "s.toml"
    path.write_text(text)
    return parse_spec(tomllib.loads(text), path)


def test_any_over_unscored_pairs_draws_ibn_only_and_says_so(files):
    spec = study(files, "pairs.tsv")
    assert spec.search.losses.mode == "fixed" and spec.search.losses.combos == ("ibn",)
    assert spec.notes == ['[data] train holds unscored (anchor, positive) pairs: losses = "any" draws ibn only '
                          '(cos_mse, cosent, angle need a score or a negative; mine hard negatives with '
                          'mine_num_negatives to train them)']
    trial = optuna.create_study().ask()
    config = spec.search.sample(trial, spec.base)
    assert set(trial.params) == {"w_ibn", "tau_ibn"}
    assert {k for k, v in config.weights.items() if v} == {"ibn"}
    mapped = study(files, "qa.csv", train_table='columns = { anchor = "question", positive = "answer" }')
    assert mapped.search.losses.combos == ("ibn",)


@pytest.mark.parametrize("train, extra", [("trip.jsonl", ""), ("stsb", ""),
                                          ("pairs.tsv", "mine_num_negatives = [1, 3]")])
def test_scored_data_triplets_and_always_mined_pairs_keep_every_loss(files, train, extra):
    spec = study(files, train, extra)
    assert spec.search.losses.mode == "any" and spec.search.losses.names == () and spec.notes == []
    assert len(spec.search.losses.reachable()) == 15


def test_pairs_mined_only_sometimes_stay_ibn_only(files):
    assert study(files, "pairs.tsv", "mine_num_negatives = [0, 3]").search.losses.combos == ("ibn",)
