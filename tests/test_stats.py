"""tuner.stats: seed summaries (t-interval) and the paired bootstrap, on cases with known answers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from tuner.stats import not_significantly_below, paired_bootstrap, seed_summary, tie_with_best_mask


def strict(obj) -> None:
    json.loads(json.dumps(obj, allow_nan=False), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_seed_summary_matches_textbook_t_interval():
    scores = [0.80, 0.82, 0.81, 0.85]
    out = seed_summary(scores)
    mean = 0.82
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / 3)
    half = 3.182446305284263 * sd / 2  # t(0.975, df=3) from tables
    assert out["n"] == 4 and out["mean"] == pytest.approx(mean)
    assert out["std"] == pytest.approx(sd)
    assert out["half_width"] == pytest.approx(half, rel=1e-9)
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    strict(out)


def test_seed_summary_one_run_and_failed_runs():
    one = seed_summary([0.7])
    assert one["mean"] == 0.7 and one["std"] is None and one["ci_low"] is None
    with_nan = seed_summary([0.7, float("nan"), 0.9, None])
    assert with_nan["n"] == 2 and with_nan["dropped"] == 2 and with_nan["mean"] == pytest.approx(0.8)
    assert seed_summary([])["mean"] is None
    strict(with_nan)


def sts_case(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, n)
    good = gold + rng.normal(0, 0.8, n)
    bad = gold + rng.normal(0, 3.0, n)
    return gold, good, bad


def test_identical_systems_difference_zero_not_significant():
    gold, good, _ = sts_case()
    out = paired_bootstrap(good, good.copy(), gold, metric="spearman", n_resamples=500)
    assert out["difference"] == 0.0 and out["ci_low"] == 0.0 and out["ci_high"] == 0.0
    assert out["p_a_not_better"] == 1.0 and out["p_two_sided"] == 1.0
    assert not_significantly_below(good, good, gold, n_resamples=500)["tie_with_best"]
    strict(out)


def test_clearly_better_system_is_significant():
    gold, good, bad = sts_case()
    out = paired_bootstrap(good, bad, gold, metric="spearman", n_resamples=1000)
    expected = sps.spearmanr(good, gold).statistic - sps.spearmanr(bad, gold).statistic
    assert out["difference"] == pytest.approx(expected)
    assert out["a"] == pytest.approx(sps.spearmanr(good, gold).statistic)
    assert out["ci_low"] > 0 and out["p_a_not_better"] < 0.01
    verdict = not_significantly_below(bad, good, gold, n_resamples=1000)
    assert verdict["below"] and not verdict["tie_with_best"]


def test_resampling_is_paired():
    """A constant shift of one system's similarities changes nothing for Spearman: all replicates 0.
    An unpaired bootstrap (different items per system) would spread around 0 instead."""
    gold, good, _ = sts_case(200, 1)
    out = paired_bootstrap(good, good + 10.0, gold, metric="spearman", n_resamples=300)
    assert out["ci_low"] == 0.0 and out["ci_high"] == 0.0


def test_bootstrap_is_seeded_and_deterministic():
    gold, good, bad = sts_case(150, 2)
    a = paired_bootstrap(good, bad, gold, n_resamples=400, seed=7)
    b = paired_bootstrap(good, bad, gold, n_resamples=400, seed=7)
    c = paired_bootstrap(good, bad, gold, n_resamples=400, seed=8)
    assert a == b and a["ci_low"] != c["ci_low"]


def test_accuracy_from_correctness_and_from_predictions():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    strong = np.where(rng.random(400) < 0.9, labels, 1 - labels)
    weak = np.where(rng.random(400) < 0.6, labels, 1 - labels)
    by_pred = paired_bootstrap(strong, weak, labels, metric="accuracy", n_resamples=500)
    by_corr = paired_bootstrap((strong == labels).astype(int), (weak == labels).astype(int), metric="accuracy",
                               n_resamples=500)
    assert by_pred == by_corr
    assert by_pred["difference"] == pytest.approx(np.mean(strong == labels) - np.mean(weak == labels))
    assert by_pred["ci_low"] > 0.2 and by_pred["p_a_not_better"] == 0.0


def test_close_systems_are_not_separated():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.80, labels, 1 - labels)
    b = np.where(rng.random(200) < 0.79, labels, 1 - labels)
    assert not_significantly_below(b, a, labels, metric="accuracy", n_resamples=500)["tie_with_best"]


def test_tie_with_best_mask():
    gold, good, bad = sts_case(300, 5)
    near = good + np.random.default_rng(9).normal(0, 0.05, len(good))
    scores = [sps.spearmanr(x, gold).statistic for x in (good, bad, near)] + [None]
    mask = tie_with_best_mask(scores, [good, bad, near, None], gold, n_resamples=400)
    assert mask == [True, False, True, False]


def test_bad_input():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([1, 2, 3], [1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="gold"):
        paired_bootstrap([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap([1, 2], [1, 2], [1, 2], metric="f1")
    with pytest.raises(ValueError, match="0/1"):
        paired_bootstrap([0.3, 1], [1, 0], metric="accuracy")
