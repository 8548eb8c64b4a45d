"""Hard-negative mining (issue #24, :mod:`tuner.engine._mining`): the options' meaning on embeddings whose
ranking is known by hand, determinism, the cache (a second call encodes nothing, two threads mine once),
several negative columns in training, and a fine-tune on mined triplets with the tiny model."""
from __future__ import annotations

import math
import re
import threading
import time

import numpy as np
import pandas as pd
import pytest

import tuner
from tuner.config import RunConfig
from tuner.data.mining import MiningSettings
from tuner.engine import _mining
from tuner.engine._prepare import shaped_train_data
from tuner.errors import ConfigError, TunerError
from tuner.models import load_encoder

# Unit vectors at these angles (degrees) from the anchor "q": cos 10 = 0.985 is q's positive "p".
ANGLES = {"q": 0, "p": 10, "c1": 5, "c2": 20, "c3": 40, "c4": 60, "c5": 80}
COS = {t: math.cos(math.radians(a)) for t, a in ANGLES.items()}
# q's positive is p; every c_i is the positive of an anchor of its own ("a_ci" points where c_i does), and
# "q" itself is the positive of "a_q", so the anchor's own text is in the corpus (and must not be mined).
PAIRS = pd.DataFrame({"anchor": ["q", "a_c1", "a_c2", "a_c3", "a_c4", "a_c5", "a_q"],
                      "positive": ["p", "c1", "c2", "c3", "c4", "c5", "q"]})


def fake_encode(calls: list):
    def encode(encoder, texts, batch_size=64, max_seq_length=128):
        calls.append(list(texts))
        angles = [np.radians(ANGLES[t.removeprefix("a_")]) for t in texts]
        return np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)
    return encode


@pytest.fixture
def encoder(tiny_model_dir):
    return load_encoder(str(tiny_model_dir), device="cpu")


@pytest.fixture
def calls(monkeypatch):
    seen: list = []
    monkeypatch.setattr(_mining, "encode", fake_encode(seen))
    return seen


def q_negatives(encoder, **options) -> list:
    mined = _mining.mine_hard_negatives(encoder, PAIRS, MiningSettings(**options), cache=False)
    row = mined.frame.iloc[0]
    return [row[c] for c in mined.negatives if isinstance(row[c], str)]


@pytest.mark.parametrize("options, expected", [
    ({}, ["c1"]),                                               # the most similar non-positive; "q" itself never
    ({"num_negatives": 3}, ["c1", "c2", "c3"]),
    ({"num_negatives": 2, "range_min": 1}, ["c2", "c3"]),       # ranks [1, 3)
    ({"num_negatives": 2, "range_min": 1, "range_max": 2}, None),  # too few ranks: refused (below)
    ({"num_negatives": 2, "margin": 0.1}, ["c3", "c4"]),        # cos <= 0.985 - 0.1
    ({"relative_margin": 0.05}, ["c3"]),                        # cos <= 0.985 - 0.049: c2 (0.940) is out
    ({"max_score": 0.8}, ["c3"]),
    ({"num_negatives": 3, "max_score": 0.95, "min_score": 0.6}, ["c2", "c3"]),  # fewer than asked
    ({"num_negatives": 2, "range_max": 2, "margin": 0.0}, ["c2"]),  # the window first, then the filters
])
def test_the_options_select_what_hand_ranking_says(encoder, calls, options, expected):
    if expected is None:
        with pytest.raises(ConfigError, match="hold only 1 candidates"):
            q_negatives(encoder, **options)
        return
    assert q_negatives(encoder, **options) == expected


def test_scores_rows_and_stats(encoder, calls):
    mined = _mining.mine_hard_negatives(encoder, PAIRS, MiningSettings(num_negatives=2), cache=False)
    row = mined.frame.iloc[0]
    assert row["score_positive"] == pytest.approx(COS["p"], abs=1e-6)
    assert row["score_negative"] == pytest.approx(COS["c1"], abs=1e-6)
    assert list(mined.frame.columns[:4]) == ["anchor", "positive", "negative", "negative_2"]
    assert len(calls) == 2 and sorted(calls[1]) == sorted(PAIRS["positive"])  # anchors once, corpus once
    assert mined.stats["pairs"] == 7 and mined.stats["corpus"] == 7 and mined.stats["negatives_mined"] == 14
    assert list(mined.triplets().columns) == ["anchor", "positive", "negative", "negative_2"]


def test_random_sampling_is_seeded_and_in_similarity_order(encoder, calls):
    draws = [q_negatives(encoder, num_negatives=2, range_max=5, sampling="random", seed=s) for s in (1, 1, 2, 3, 4)]
    assert draws[0] == draws[1]
    assert len({tuple(d) for d in draws}) > 1
    order = ["c1", "c2", "c3", "c4", "c5"]
    assert all(order.index(d[0]) < order.index(d[1]) for d in draws)


def test_mining_is_deterministic_with_the_real_encoder(encoder, tmp_path):
    pairs = pd.DataFrame({"anchor": [f"question {i} about {w}" for i, w in enumerate("abcdefghij")],
                          "positive": [f"answer {w} number {i}" for i, w in enumerate("abcdefghij")]})
    first = _mining.mine_hard_negatives(encoder, pairs, MiningSettings(num_negatives=2), cache=False).frame
    again = _mining.mine_hard_negatives(encoder, pairs, MiningSettings(num_negatives=2), cache=False).frame
    pd.testing.assert_frame_equal(first, again)


def test_the_cache_is_hit_for_the_same_settings_and_missed_for_others(encoder, calls, tmp_path):
    settings = MiningSettings(num_negatives=2, margin=0.0)
    first = _mining.mine_hard_negatives(encoder, PAIRS, settings, cache_dir=tmp_path)
    assert not first.from_cache and len(calls) == 2 and first.cache_file.is_file()
    second = _mining.mine_hard_negatives(encoder, PAIRS, settings, cache_dir=tmp_path)
    assert second.from_cache and len(calls) == 2  # nothing encoded
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert second.stats == first.stats
    other = _mining.mine_hard_negatives(encoder, PAIRS, MiningSettings(num_negatives=3), cache_dir=tmp_path)
    assert not other.from_cache and len(calls) == 4 and other.key != first.key
    changed = PAIRS.assign(positive=PAIRS["positive"].replace("p", "c1"))  # other texts: another key
    assert _mining.mine_hard_negatives(encoder, changed.iloc[1:], settings, cache_dir=tmp_path).key != first.key
    assert not list(tmp_path.glob(".tmp-*"))


def test_two_threads_asking_at_once_mine_once(encoder, monkeypatch, tmp_path):
    seen: list = []
    fast = fake_encode(seen)

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return fast(*args, **kwargs)

    monkeypatch.setattr(_mining, "encode", slow)
    results: list = []
    work = [threading.Thread(target=lambda: results.append(_mining.mine_hard_negatives(
        encoder, PAIRS, MiningSettings(), cache_dir=tmp_path))) for _ in range(2)]
    for t in work:
        t.start()
    for t in work:
        t.join()
    assert len(seen) == 2 and sorted(r.from_cache for r in results) == [False, True]


def test_several_negative_columns_train_and_give_zero_pairs():
    frame = pd.DataFrame({"anchor": ["a1", "a2"], "positive": ["p1", "p2"], "negative": ["n1", "n2"],
                          "negative_2": ["m1", None]})
    data = shaped_train_data(frame, "triplets", "t")
    assert data.triplets.negatives == [["n1", "n2"], ["m1", None]]
    assert data.pairs.text2 == ["p1", "p2", "n1", "n2", "m1"] and list(data.pairs.labels) == [1, 1, 0, 0, 0]


def test_a_fine_tune_mines_with_its_base_model_then_trains(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "cache"))
    rows = pd.read_csv(tiny_data_dir / "sts" / "stsb" / "train.tsv", sep="\t")
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"q": rows["sentence1"], "a": rows["sentence2"]}).to_csv(pairs, index=False)
    common = dict(data_dir=str(tiny_data_dir), batch_size=8, max_seq_length=32, device="cpu", progress=False,
                  max_steps=2, columns={"anchor": "q", "positive": "a"}, weights={"ibn": 1, "cosent": 1})
    out = tuner.finetune(str(tiny_model_dir), str(pairs), "stsb", mine_num_negatives=2, mine_range_max=10, **common)
    assert out.mining["pairs"] == len(rows) and out.mining["negatives_mined"] > 0 and not out.mining["from_cache"]
    assert out.config.mine_num_negatives == 2 and set(out.scores["test"]) == {"stsb"}
    again = tuner.finetune(str(tiny_model_dir), str(pairs), "stsb", mine_num_negatives=2, mine_range_max=10,
                           seed=7, max_train_examples=20, **common)
    assert again.mining["from_cache"] and again.mining["key"] == out.mining["key"]  # another seed, the same mining
    assert len(list((tmp_path / "cache" / "mined").glob("*.parquet"))) == 1


def test_mining_needs_unscored_pairs(tiny_data_dir):
    from tuner.engine._prepare import prepare_data

    with pytest.raises(TunerError, match="mining reads unscored"):
        prepare_data(RunConfig(train=["stsb"], data_dir=str(tiny_data_dir), mine_num_negatives=1))


@pytest.mark.parametrize("changes, fragment", [
    ({"mine_num_negatives": -1}, "use 0 (no mining) or more"),
    ({"mine_range_min": 4, "mine_range_max": 4}, "not below range_max"),
    ({"mine_num_negatives": 3, "mine_range_max": 2}, "hold only 2 candidates"),
    ({"mine_min_score": 0.9, "mine_max_score": 0.5}, "above max_score"),
    ({"mine_sampling": "best"}, "use top or random"),
])
def test_bad_mining_settings_name_their_key(changes, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        RunConfig(**changes)
    assert info.value.key.startswith("mine_")


@pytest.mark.real
def test_stsb_pairs_mined_with_minilm_are_less_similar_than_their_positives(shared_data, minilm_path, tmp_path):
    train = pd.read_csv(shared_data / "sts" / "stsb" / "train.tsv", sep="\t", quoting=3, keep_default_na=False)
    train = train[pd.to_numeric(train["score"]) >= 4].head(600)
    pairs = pd.DataFrame({"anchor": train["sentence1"].astype(str), "positive": train["sentence2"].astype(str)})
    mined = tuner.mine(minilm_path, pairs, tmp_path / "t.parquet", num_negatives=2, range_max=20, margin=0.0,
                       cache=False, device="cpu")
    out = pd.read_parquet(tmp_path / "t.parquet")
    assert list(out.columns) == ["anchor", "positive", "negative", "negative_2"]
    assert len(out) == mined.stats["triplet_rows"] > 0.9 * len(pairs)
    assert mined.stats["negative_similarity"]["mean"] < mined.stats["positive_similarity"]["mean"] - 0.1
    assert (out["negative"] != out["positive"]).all() and (out["negative"] != out["anchor"]).all()
