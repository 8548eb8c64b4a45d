"""Overlap figures (tuner.data.overlap), the sentence-disjoint protocol and ``tuner splits``."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tuner.data import load_dataset, protocol_splits
from tuner.data.overlap import overlap_report, split_overlap, splits_overlap
from tuner.data.splits import sentence_groups
from tuner.errors import TunerError


def strict_loads(text: str):
    """json.loads that rejects NaN/Infinity (as jq and JavaScript do)."""
    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def sts(pairs: list[tuple[str, str]], scores=None) -> pd.DataFrame:
    return pd.DataFrame({"sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs],
                         "score": scores if scores is not None else np.linspace(0, 5, len(pairs))})


def shared_sts(n: int, seed: int = 0) -> pd.DataFrame:
    """n pairs over a small pool of sentences: many chains, some repeated and reversed pairs."""
    rng = np.random.default_rng(seed)
    pool = [f"sentence {i}" for i in range(3 * n)]  # sparse: no giant component
    pairs = []
    for _ in range(n):
        a, b = rng.choice(len(pool), 2, replace=False)
        pairs.append((pool[a], pool[b]))
    return sts(pairs, rng.uniform(0, 5, n).round(2))


def sentences(df: pd.DataFrame) -> set:
    cols = ["sentence"] if "sentence" in df else ["sentence1", "sentence2"]
    return set().union(*(set(df[c]) for c in cols))


# ----------------------------------------------------------------------------- the figures


def test_split_overlap_known_sts_case():
    train = sts([("a", "b"), ("c", "d"), ("e", "f")])
    test = sts([("a", "x"),    # one sentence in train
                ("b", "c"),    # both, not a train pair
                ("b", "a"),    # identical to a train pair, reversed
                ("y", "z")])   # none
    got = split_overlap(train, test, "sts")
    assert got == {"n": 4, "any_in_train": 0.75, "both_in_train": 0.5, "pair_in_train": 0.25}


def test_split_overlap_known_classification_case_and_empty():
    train = pd.DataFrame({"sentence": ["good", "bad", "ok"], "label": [1, 0, 1]})
    test = pd.DataFrame({"sentence": ["good", "fine", "bad", "great", "Good"], "label": [1, 1, 0, 1, 1]})
    assert split_overlap(train, test, "classification") == {"n": 5, "sentence_in_train": 0.4}
    assert split_overlap(train, test.iloc[0:0], "classification") == {"n": 0, "sentence_in_train": None}
    assert split_overlap(sts([("a", "b")]), sts([])[:0], "sts")["any_in_train"] is None


def test_seed_protocol_overlap_matches_a_direct_count():
    df = shared_sts(300)
    parts = protocol_splits(load_dataset(df), "seed")
    rep = splits_overlap(parts, "sts")
    train_sents = set(parts["train"].sentence1) | set(parts["train"].sentence2)
    expected = np.mean([(a in train_sents) or (b in train_sents)
                        for a, b in zip(parts["test"].sentence1, parts["test"].sentence2)])
    assert rep["test"]["any_in_train"] == pytest.approx(expected)
    assert rep["test"]["any_in_train"] > 0.5  # a row split of a shared pool leaks
    assert rep["sizes"] == {"train": 189, "dev": 21, "test": 90}


# ----------------------------------------------------------------------------- the disjoint protocol


def test_sentence_groups_are_components():
    df = sts([("a", "b"), ("c", "d"), ("b", "e"), ("f", "f"), ("e", "a"), ("d", "g")])
    assert sentence_groups(df).tolist() == [0, 1, 0, 2, 0, 1]
    cls = pd.DataFrame({"sentence": ["x", "y", "x", "z"], "label": [1, 0, 1, 1]})
    assert sentence_groups(cls).tolist() == [0, 1, 0, 2]


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_disjoint_sts_has_no_shared_sentence_and_keeps_every_row(seed):
    df = shared_sts(400, seed)
    ds = load_dataset(df)
    parts = protocol_splits(ds, "disjoint", seed=seed)
    tr, dev, te = (sentences(parts[k]) for k in ("train", "dev", "test"))
    assert not (tr & te) and not (tr & dev) and not (dev & te)
    assert sum(len(p) for p in parts.values()) == 400
    both = pd.concat(parts.values())
    assert sorted(map(tuple, both.to_numpy().tolist())) == sorted(map(tuple, df.to_numpy().tolist()))
    rep = splits_overlap(parts, "sts")
    assert rep["test"]["any_in_train"] == 0.0 and rep["dev"]["any_in_train"] == 0.0
    for p in parts.values():
        assert p.index.equals(pd.RangeIndex(len(p)))


def test_disjoint_proportions_close_to_70_30_and_deterministic():
    # a pool where each component is small: proportions can be met closely
    pairs = [(f"s{i}a", f"s{i}b") for i in range(500)] + [(f"s{i}a", f"t{i}") for i in range(0, 500, 5)]
    ds = load_dataset(sts(pairs))
    a = protocol_splits(ds, "disjoint", seed=3)
    b = protocol_splits(ds, "disjoint", seed=3)
    c = protocol_splits(ds, "disjoint", seed=4)
    assert all(a[k].equals(b[k]) for k in a)
    assert not a["test"].equals(c["test"])
    n = len(pairs)
    assert abs(len(a["test"]) - 0.3 * n) <= 2
    assert abs(len(a["dev"]) - 0.1 * (n - len(a["test"]))) <= 2
    assert len(a["test"]) <= round(0.3 * n)  # never overshoots the target


def test_disjoint_classification_keeps_duplicates_in_one_split():
    texts = [f"phrase {i % 70}" for i in range(200)]  # every phrase 2-3 times
    df = pd.DataFrame({"sentence": texts, "label": [int(t.split()[1]) % 2 for t in texts]})
    parts = protocol_splits(load_dataset(df), "disjoint", seed=5)
    tr, dev, te = (sentences(parts[k]) for k in ("train", "dev", "test"))
    assert not (tr & te) and not (tr & dev) and not (dev & te)
    assert sum(len(p) for p in parts.values()) == 200
    seed_parts = protocol_splits(load_dataset(df), "seed", seed=5)
    assert splits_overlap(seed_parts, "classification")["test"]["sentence_in_train"] > 0.5


def test_disjoint_giant_component_stays_in_train():
    # one component of 60% of the rows: larger than the test target, so it is never held out
    hub = [("hub", f"h{i}") for i in range(60)]
    rest = [(f"p{i}", f"q{i}") for i in range(40)]
    parts = protocol_splits(load_dataset(sts(hub + rest)), "disjoint", seed=0)
    assert "hub" in set(parts["train"].sentence1)
    assert len(parts["test"]) == 30 and splits_overlap(parts, "sts")["test"]["any_in_train"] == 0.0


def test_disjoint_too_few_groups_is_one_line_error():
    df = sts([("a", "b"), ("b", "c"), ("c", "a")])
    with pytest.raises(TunerError) as info:
        protocol_splits(load_dataset(df), "disjoint")
    msg = str(info.value)
    assert "sentence group" in msg and "\n" not in msg


def test_disjoint_declared_splits_drop_shared_training_rows():
    df = pd.DataFrame({"sentence1": ["a", "b", "c", "d", "x"], "sentence2": ["e", "f", "g", "h", "y"],
                       "score": [1.0, 2.0, 3.0, 4.0, 5.0], "split": ["train", "train", "train", "dev", "test"]})
    df.loc[0, "sentence2"] = "x"  # train row 0 shares "x" with the test row
    df.loc[1, "sentence1"] = "d"  # train row 1 shares "d" with the dev row
    ds = load_dataset(df)
    parts = protocol_splits(ds, "disjoint")
    assert parts["train"]["sentence1"].tolist() == ["c"]
    assert len(protocol_splits(ds, "seed")["train"]) == 3  # other protocols keep declared rows


def test_seed_protocol_unchanged_by_disjoint():
    from sklearn.model_selection import train_test_split

    df = shared_sts(100)
    parts = protocol_splits(load_dataset(df), "seed", seed=42)
    rest, test = train_test_split(df, test_size=0.3, random_state=42)
    assert parts["test"].equals(test.reset_index(drop=True))


# ----------------------------------------------------------------------------- report + CLI


def test_overlap_report_is_strict_json(tmp_path):
    rep = overlap_report(shared_sts(120), "disjoint", seed=1)
    text = json.dumps(rep, allow_nan=False)
    back = strict_loads(text)
    assert back["protocol"] == "disjoint" and back["seed"] == 1 and back["task"] == "sts"
    assert set(back["sizes"]) == {"train", "dev", "test"}
    assert back["test"]["any_in_train"] == 0.0


def test_cli_splits_json_and_table(tmp_path, capsys):
    from tuner.cli import main

    path = tmp_path / "pairs.csv"
    shared_sts(200).to_csv(path, index=False)
    assert main(["splits", "--dataset", str(path), "--protocol", "seed", "--json"]) == 0
    payload = strict_loads(capsys.readouterr().out)
    assert payload["sizes"] == {"train": 126, "dev": 14, "test": 60}
    assert 0 < payload["test"]["any_in_train"] <= 1
    assert main(["splits", "--dataset", str(path), "--protocol", "disjoint"]) == 0
    out = capsys.readouterr().out
    assert "any%" in out and "disjoint" in out


@pytest.mark.parametrize("argv, fragment", [
    (["splits", "--dataset", "stsx"], "unknown dataset 'stsx'"),
    (["splits", "--dataset", "stsb", "--protocol", "kfold"], "invalid choice"),
])
def test_cli_splits_bad_input(argv, fragment, capsys, tmp_path):
    from tuner.cli import main

    code = main(argv + ["--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and fragment in err


# ----------------------------------------------------------------------------- real data

REAL = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr", "mr", "cr", "mpqa", "subj")


@pytest.mark.real
@pytest.mark.parametrize("name", REAL)
def test_real_disjoint_has_no_overlap_and_keeps_70_30(shared_data, name):
    ds = load_dataset(name, data_dir=shared_data)
    rep = overlap_report(ds, "disjoint")
    key = "sentence_in_train" if ds.task == "classification" else "any_in_train"
    assert rep["test"][key] == 0.0 and rep["dev"][key] == 0.0
    n = len(ds.official())
    assert sum(rep["sizes"].values()) == n
    assert abs(rep["sizes"]["test"] / n - 0.3) < 0.01
    assert abs(rep["sizes"]["dev"] / (n - rep["sizes"]["test"]) - 0.1) < 0.01


@pytest.mark.real
def test_real_seed_overlap_sickr_and_mpqa(shared_data):
    sick = overlap_report("sickr", "seed", data_dir=shared_data)
    assert 0.90 < sick["test"]["any_in_train"] < 0.92  # 91.1%: the measurement
    mpqa = overlap_report("mpqa", "seed", data_dir=shared_data)
    assert mpqa["test"]["sentence_in_train"] > 0.2
