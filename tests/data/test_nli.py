"""NLI data: loading (files, DataFrames, built-ins snli / allnli) and the pair / triplet conversions."""
from __future__ import annotations

import pandas as pd
import pytest

from tuner.data import load_dataset
from tuner.data.nli import (
    check_neutral,
    label_counts,
    nli_pairs,
    nli_pairs_dataset,
    nli_triplet_splits,
    nli_triplets,
)
from tuner.errors import TunerError

ROWS = pd.DataFrame({
    "premise": ["A man plays a guitar ."] * 4 + ["Two dogs run in a park ."] * 3
    + ["A child eats an apple ."] * 2 + ["A cat sleeps ."],
    "hypothesis": ["A man makes music .", "A person plays an instrument .", "The man is asleep .",
                   "The man is famous .",
                   "Animals are outside .", "The dogs are asleep .", "The dogs are brothers .",
                   "A kid has food .", "The child is hungry .",
                   "A cat is awake ."],
    "label": ["entailment", "entailment", "contradiction", "neutral",
              "entailment", "contradiction", "neutral",
              "entailment", "neutral",
              "contradiction"],
})


def test_file_and_dataframe_with_nli_columns_load_as_nli(tmp_path):
    path = tmp_path / "nli.tsv"
    ids = ROWS.assign(label=ROWS["label"].map({"entailment": 0, "neutral": 1, "contradiction": 2}))
    ids.to_csv(path, sep="\t", index=False)
    from_file = load_dataset(path)
    assert from_file.task == "nli" and list(from_file.splits) == ["all"]
    pd.testing.assert_frame_equal(from_file.splits["all"], ROWS)  # 0/1/2 read as the three words
    from_frame = load_dataset(ROWS.assign(label=ROWS["label"].str.upper()), name="mine")
    pd.testing.assert_frame_equal(from_frame.splits["all"], ROWS)
    with_split = load_dataset(ROWS.assign(split=["train"] * 7 + ["test"] * 3))
    assert {k: len(v) for k, v in with_split.splits.items()} == {"train": 7, "test": 3}


@pytest.mark.parametrize("label, message", [
    ("-", "row 2: label '-' is not an NLI label (a pair without a gold label: drop such rows)"),
    ("3", "row 2: label '3' is not an NLI label"),
    ("entails", "use entailment, neutral or contradiction"),
])
def test_bad_labels_are_one_clear_line(label, message):
    bad = ROWS.copy()
    bad.loc[1, "label"] = label
    with pytest.raises(TunerError) as info:
        load_dataset(bad, name="bad")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_column_is_named():
    with pytest.raises(TunerError, match="column 'label' is missing; an NLI file needs columns premise, hypothesis, label"):
        load_dataset(ROWS.drop(columns=["label"]))
    with pytest.raises(TunerError, match="is an NLI dataset, not sts"):
        load_dataset("snli", task="sts")


def test_pairs_drop_neutral_by_default():
    pairs = nli_pairs(ROWS)
    assert list(pairs.columns) == ["sentence1", "sentence2", "score"]
    assert len(pairs) == 7  # 10 rows, 3 of them neutral
    expected = ROWS[ROWS["label"] != "neutral"]
    assert pairs["sentence2"].tolist() == expected["hypothesis"].tolist()
    assert pairs["score"].tolist() == [1.0 if x == "entailment" else 0.0 for x in expected["label"]]


def test_pairs_keep_neutral_with_a_chosen_score():
    pairs = nli_pairs(ROWS, neutral=0.5)
    assert len(pairs) == len(ROWS)
    assert pairs["score"].tolist() == [{"entailment": 1.0, "neutral": 0.5, "contradiction": 0.0}[x] for x in ROWS["label"]]
    assert nli_pairs(ROWS, neutral="drop").equals(nli_pairs(ROWS))
    assert check_neutral("0.25") == 0.25
    for bad in (1.5, -0.1, "half", float("nan")):
        with pytest.raises(TunerError, match="neutral"):
            nli_pairs(ROWS, neutral=bad)


def test_pairs_need_something_left():
    only_neutral = ROWS[ROWS["label"] == "neutral"]
    with pytest.raises(TunerError, match="no entailment or contradiction rows left"):
        nli_pairs(only_neutral)


def test_triplets_pair_each_entailment_with_a_contradiction_of_the_same_premise():
    triplets = nli_triplets(ROWS)
    assert triplets.values.tolist() == [
        ["A man plays a guitar .", "A man makes music .", "The man is asleep ."],
        ["A man plays a guitar .", "A person plays an instrument .", "The man is asleep ."],
        ["Two dogs run in a park .", "Animals are outside .", "The dogs are asleep ."],
    ]  # the child has no contradiction (dropped); the cat has no entailment (no positive)


def test_triplets_keep_anchor_without_contradiction_when_asked():
    triplets = nli_triplets(ROWS, no_contradiction="keep")
    assert len(triplets) == 4
    last = triplets.iloc[-1]
    assert (last["anchor"], last["positive"]) == ("A child eats an apple .", "A kid has food .")
    assert last["negative"] is None
    assert triplets["negative"].isna().sum() == 1
    with pytest.raises(TunerError, match="no_contradiction: expected 'drop' or 'keep'"):
        nli_triplets(ROWS, no_contradiction="random")


def test_several_contradictions_are_used_in_turn():
    rows = pd.DataFrame({"premise": ["p"] * 5, "hypothesis": ["e1", "c1", "e2", "c2", "e3"],
                         "label": ["entailment", "contradiction", "entailment", "contradiction", "entailment"]})
    assert nli_triplets(rows)["negative"].tolist() == ["c1", "c2", "c1"]


def test_no_triplet_at_all_is_an_error():
    with pytest.raises(TunerError, match="no premise has both"):
        nli_triplets(ROWS[ROWS["premise"] == "A child eats an apple ."])


def test_dataset_level_conversions():
    ds = load_dataset(ROWS.assign(split=["train"] * 7 + ["test"] * 3), name="toy")
    pairs = nli_pairs_dataset(ds, neutral=0.5)
    assert pairs.task == "sts" and pairs.score_range == (0.0, 1.0) and set(pairs.splits) == {"train", "test"}
    assert len(pairs.splits["train"]) == 7
    with pytest.raises(TunerError, match="no premise has both"):  # the test split has no contradiction pair
        nli_triplet_splits(ds)
    assert len(nli_triplet_splits(ds, no_contradiction="keep")["test"]) == 1
    with pytest.raises(TunerError, match="not NLI"):
        nli_pairs_dataset(load_dataset(pd.DataFrame({"sentence": ["a b", "c d"], "label": [0, 1]})))


def test_allnli_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TunerError) as info:
        load_dataset("allnli")
    message = str(info.value)
    assert "sentence-transformers/all-nli" in message and "use the built-in 'snli'" in message
    assert "\n" not in message


@pytest.mark.real
def test_snli_from_shared_data(shared_data):
    ds = load_dataset("snli", data_dir=shared_data)
    assert ds.task == "nli" and set(ds.splits) == {"dev", "test"}
    # the counts that shared/data/README.md gives for the official SNLI 1.0 dev and test splits
    assert label_counts(ds.splits["dev"]) == {"entailment": 3329, "neutral": 3235, "contradiction": 3278}
    assert label_counts(ds.splits["test"]) == {"entailment": 3368, "neutral": 3219, "contradiction": 3237}
    pairs = nli_pairs(ds.splits["dev"])
    assert len(pairs) == 3329 + 3278
    triplets = nli_triplets(ds.splits["dev"])
    assert 3000 < len(triplets) <= 3329 and triplets["negative"].notna().all()
    rows = set(ds.splits["dev"].itertuples(index=False, name=None))
    for anchor, positive, negative in triplets.itertuples(index=False, name=None):
        assert (anchor, positive, "entailment") in rows and (anchor, negative, "contradiction") in rows
