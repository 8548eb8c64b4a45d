"""In-batch negatives' duplicate rule (issue #24): ``positive`` / ``mask`` / ``off``, by hand.

Every expected value is worked out in the comments on unit vectors ``e1 = (1, 0)``, ``e2 = (0, 1)``
with ``tau = 1``, so each logit is a cosine: 1 (same vector) or 0 (orthogonal), and each exp is
``e`` or 1. ``E`` below is ``math.e``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tuner.config import RunConfig
from tuner.errors import ConfigError
from tuner.losses.combined import CombinedLoss
from tuner.losses.in_batch_negatives import hard_negatives_loss, in_batch_negatives_loss

E, LOG = math.e, math.log
E1, E2 = [1.0, 0.0], [0.0, 1.0]


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def ids(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# ---- pair form
# a = (e1, e1, e2), b = (e1, e2, e1), every pair a positive; texts: a0 = a2 (ids 5, 6, 5), b0 = b2 (10, 11, 10).
# a -> b: logits a_i . b_j =  row0 [1, 0, 1]   row1 [1, 0, 1]   row2 [0, 1, 0]; copies of b_i: {0, 2} for i = 0, 2
# b -> a: logits b_i . a_j =  row0 [1, 1, 0]   row1 [0, 0, 1]   row2 [1, 1, 0]; copies of a_i: {0, 2} for i = 0, 2
PAIR_A, PAIR_B, PAIR_IDS = t([E1, E1, E2]), t([E1, E2, E1]), (ids(5, 6, 5), ids(10, 11, 10))
PAIR_EXPECTED = {
    # off: plain softmax towards the own column.
    #   a->b: -log(e/(2e+1)), -log(1/(2e+1)), -log(1/(e+2));  b->a: -log(e/(2e+1)), -log(1/(e+2)), -log(1/(2e+1))
    "off": ((LOG(2 * E + 1) - 1 + LOG(2 * E + 1) + LOG(E + 2)) / 3
            + (LOG(2 * E + 1) - 1 + LOG(E + 2) + LOG(2 * E + 1)) / 3) / 2,
    # mask: the other copy leaves the softmax.
    #   a->b: row0 [1, 0, -] -> -log(e/(e+1)); row1 as off; row2 [-, 1, 0] -> -log(1/(e+1))
    #   b->a: row0 [1, 1, -] -> -log(e/2e) = log 2; row1 as off; row2 [-, 1, 0] -> -log(1/(e+1))
    "mask": ((LOG(E + 1) - 1 + LOG(2 * E + 1) + LOG(E + 1)) / 3
             + (LOG(2) + LOG(E + 2) + LOG(E + 1)) / 3) / 2,
    # positive: -log of the probability mass on both copies.
    #   a->b: row0 -log(2e/(2e+1)); row1 as off; row2 -log(2/(e+2))
    #   b->a: row0 -log((e+1)/(2e+1)); row1 as off; row2 -log((1+e)/(2e+1))
    "positive": ((LOG(2 * E + 1) - LOG(2 * E) + LOG(2 * E + 1) + LOG(E + 2) - LOG(2)) / 3
                 + (2 * (LOG(2 * E + 1) - LOG(E + 1)) + LOG(E + 2)) / 3) / 2,
}


@pytest.mark.parametrize("rule", ["off", "mask", "positive"])
def test_pair_form_by_hand(rule):
    got = in_batch_negatives_loss(PAIR_A, PAIR_B, torch.ones(3), tau=1.0, duplicates=rule, text_ids=PAIR_IDS)
    assert got.item() == pytest.approx(PAIR_EXPECTED[rule], abs=1e-12)


def test_pair_form_a_negative_pairs_copy_still_counts_and_only_positive_pairs_are_anchors():
    # Pair 1 is a negative (label 0): anchors 0 and 2 only. b0 = b2 and a0 = a2 as above.
    # a->b rows 0 and 2 and b->a rows 0 and 2 of the expectations above, averaged over 2 anchors.
    labels = torch.tensor([1.0, 0.0, 1.0])
    got = in_batch_negatives_loss(PAIR_A, PAIR_B, labels, tau=1.0, duplicates="positive", text_ids=PAIR_IDS)
    ab = (LOG(2 * E + 1) - LOG(2 * E) + LOG(E + 2) - LOG(2)) / 2
    ba = (LOG(2 * E + 1) - LOG(E + 1)) * 2 / 2
    assert got.item() == pytest.approx((ab + ba) / 2, abs=1e-12)
    # and a copy whose own pair is a negative: b1 (pair 1, label 0) given b0's text
    copy = (ids(5, 6, 7), ids(10, 10, 11))
    # a->b row0 [1, 0, 1]: copies {0, 1} -> -log((e+1)/(2e+1)); row2 [0, 1, 0]: no copy -> -log(1/(e+2))
    # b->a rows 0, 2 have no copy (a ids distinct): -log(e/(2e+1)), -log(1/(2e+1))
    got = in_batch_negatives_loss(PAIR_A, PAIR_B, labels, tau=1.0, duplicates="positive", text_ids=copy)
    expected = ((LOG(2 * E + 1) - LOG(E + 1) + LOG(E + 2)) / 2 + (LOG(2 * E + 1) - 1 + LOG(2 * E + 1)) / 2) / 2
    assert got.item() == pytest.approx(expected, abs=1e-12)


def _old_in_batch_negatives(a, b, labels, tau):
    """The loss before #24, as it was written (the reference ``off`` must reproduce bit for bit)."""
    a, b = F.normalize(a.float(), dim=-1, eps=1e-8), F.normalize(b.float(), dim=-1, eps=1e-8)
    anchors = (labels.view(-1) >= 0.6 - 1e-6).nonzero().view(-1)
    logits = tau * (a @ b.T)
    return (F.cross_entropy(logits[anchors], anchors) + F.cross_entropy(logits.T[anchors], anchors)) / 2


def _old_hard_negatives(anchor, positive, negative, tau):
    h = F.normalize(anchor.float(), dim=-1, eps=1e-8)
    candidates = F.normalize(torch.cat([positive.float(), negative.float()]), dim=-1, eps=1e-8)
    return F.cross_entropy(tau * (h @ candidates.T), torch.arange(h.shape[0]))


def test_off_is_the_old_loss_bit_for_bit_and_every_rule_is_it_without_copies():
    g = torch.Generator().manual_seed(0)
    a, b, n = (torch.randn(8, 16, generator=g) for _ in range(3))
    labels = torch.rand(8, generator=g)
    labels[0] = 1.0
    dup = (torch.randint(0, 3, (8,), generator=g), torch.randint(0, 3, (8,), generator=g))  # many copies
    old = _old_in_batch_negatives(a, b, labels, 20.0)
    assert torch.equal(in_batch_negatives_loss(a, b, labels, tau=20.0, duplicates="off", text_ids=dup), old)
    assert torch.equal(in_batch_negatives_loss(a, b, labels, tau=20.0), old)  # no ids: nothing is known
    unique = (torch.arange(8), torch.arange(8, 16))
    for rule in ("positive", "mask"):
        assert torch.equal(in_batch_negatives_loss(a, b, labels, tau=20.0, duplicates=rule, text_ids=unique), old)
        assert not torch.equal(in_batch_negatives_loss(a, b, labels, tau=20.0, duplicates=rule, text_ids=dup), old)
    old_t = _old_hard_negatives(a, b, n[:5], 20.0)
    tri = (torch.arange(8), torch.randint(0, 3, (8,), generator=g), torch.randint(0, 3, (5,), generator=g))
    assert torch.equal(hard_negatives_loss(a, b, n[:5], tau=20.0, duplicates="off", text_ids=tri), old_t)
    assert torch.equal(hard_negatives_loss(a, b, n[:5], tau=20.0, duplicates="positive",
                                           text_ids=(torch.arange(8), torch.arange(8, 16), torch.arange(16, 21))), old_t)


# ---- triplet form
# anchors h = (e1, e2), positives p = (e1, e2), hard negatives n = (e2, e1) (one per row);
# candidates [p0, p1, n0, n1] = [e1, e2, e2, e1]: logits h0 [1, 0, 0, 1], h1 [0, 1, 1, 0].
TRI_H, TRI_P, TRI_N = t([E1, E2]), t([E1, E2]), t([E2, E1])


@pytest.mark.parametrize("rule, anchor1", [
    # n0 (row 0's contradiction) has p1's text (ids p = 10, 11; n = 11, 12): for anchor 1 it is a copy (column 2).
    # anchor 0 has no copy, in every rule -log(e/(2e+2)); anchor 1:
    ("off", LOG(2 * E + 2) - 1),     # -log(e/(2e+2))
    ("mask", LOG(E + 2) - 1),        # [0, 1, -, 0] -> -log(e/(e+2))
    ("positive", LOG(E + 1) - 1),    # -log(2e/(2e+2))
])
def test_triplet_form_another_rows_hard_negative_is_a_copy(rule, anchor1):
    got = hard_negatives_loss(TRI_H, TRI_P, TRI_N, tau=1.0, duplicates=rule, text_ids=(ids(0, 1), ids(10, 11), ids(11, 12)))
    assert got.item() == pytest.approx((LOG(2 * E + 2) - 1 + anchor1) / 2, abs=1e-12)


@pytest.mark.parametrize("rule, anchor1", [
    # n1 (row 1's own contradiction) has row 1's positive text (ids n = 12, 11): copy in column 3, logit 0.
    ("off", LOG(2 * E + 2) - 1),     # -log(e/(2e+2))
    ("mask", LOG(2 * E + 1) - 1),    # [0, 1, 1, -] -> -log(e/(2e+1))
    ("positive", LOG(2)),            # -log((e+1)/(2e+2))
])
def test_triplet_form_own_hard_negative_equal_to_own_positive(rule, anchor1):
    got = hard_negatives_loss(TRI_H, TRI_P, TRI_N, tau=1.0, duplicates=rule, text_ids=(ids(0, 1), ids(10, 11), ids(12, 11)))
    assert got.item() == pytest.approx((LOG(2 * E + 2) - 1 + anchor1) / 2, abs=1e-12)


def test_triplet_form_a_repeated_anchor_is_not_a_copy():
    # Same premise text twice (anchor ids 0, 0), different positives: the rule looks at the positive's text only.
    text = (ids(0, 0), ids(10, 11), ids(12, 13))
    off = hard_negatives_loss(TRI_H, TRI_P, TRI_N, tau=1.0, duplicates="off", text_ids=text)
    for rule in ("positive", "mask"):
        assert torch.equal(hard_negatives_loss(TRI_H, TRI_P, TRI_N, tau=1.0, duplicates=rule, text_ids=text), off)


@pytest.mark.parametrize("rule", ["positive", "mask", "off"])
def test_gradients_are_finite_with_copies(rule):
    g = torch.Generator().manual_seed(1)
    a, b, n = (torch.randn(6, 8, generator=g, requires_grad=True) for _ in range(3))
    text = (ids(0, 1, 0, 2, 0, 3), ids(7, 7, 7, 8, 9, 7))
    loss = in_batch_negatives_loss(a, b, torch.ones(6), duplicates=rule, text_ids=text)
    loss = loss + hard_negatives_loss(a, b, n[:4], duplicates=rule, text_ids=(*text, ids(7, 7, 10, 11)))
    loss.backward()
    for x in (a, b, n):
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---- the run setting and CombinedLoss


def test_run_setting_default_flag_and_one_line_error():
    assert RunConfig().ibn_duplicates == "positive"
    assert RunConfig(ibn_duplicates=" Mask ").ibn_duplicates == "mask"
    assert RunConfig(ibn_duplicates="off").to_argv() == ["--ibn-duplicates", "off"]
    with pytest.raises(ConfigError, match=r"^ibn_duplicates is 'drop'; use one of positive, mask, off$"):
        RunConfig(ibn_duplicates="drop")
    with pytest.raises(Exception, match="ibn_duplicates"):
        CombinedLoss({"ibn": 1}, ibn_duplicates="maybe")


@pytest.mark.parametrize("rule", ["positive", "mask", "off"])
def test_combined_loss_passes_the_rule_and_zigzag_ids_to_both_forms(rule):
    loss = CombinedLoss.from_config(RunConfig(weights={"ibn": 1}, taus={"ibn": 1.0}, ibn_duplicates=rule))
    assert loss.wants_text_ids and loss.ibn_duplicates == rule
    zigzag = torch.stack([PAIR_A, PAIR_B], 1).reshape(6, 2)
    zigzag_ids = torch.stack(PAIR_IDS, 1).reshape(6)
    total, parts = loss(zigzag, torch.ones(3), text_ids=zigzag_ids)
    assert total.item() == pytest.approx(PAIR_EXPECTED[rule], abs=1e-6) and parts["ibn"] == pytest.approx(total.item())
    rows = torch.cat([ids(0, 1), ids(10, 11), ids(12, 11)])
    total, _ = loss.triplets(TRI_H, TRI_P, TRI_N, text_ids=rows)
    direct = hard_negatives_loss(TRI_H, TRI_P, TRI_N, tau=1.0, duplicates=rule, text_ids=(ids(0, 1), ids(10, 11), ids(12, 11)))
    assert total.item() == pytest.approx(direct.item(), abs=1e-6)
    assert not CombinedLoss({"cosent": 1}).wants_text_ids


# ---- the training loop gives the loss its text ids


def _first_step_losses(tiny_model_dir, data, **changes) -> dict[str, float]:
    from tuner.engine._train import finetune
    from tuner.models import load_encoder

    out = {}
    for rule in ("positive", "mask", "off"):
        encoder = load_encoder(str(tiny_model_dir), device="cpu")
        config = RunConfig(model=str(tiny_model_dir), weights={"ibn": 1}, batch_size=len(data), max_steps=1,
                           ibn_duplicates=rule, **changes)
        out[rule] = finetune(encoder, data, config, progress=False).losses[0]
    return out


def test_training_loop_sends_text_ids_pairs(tiny_model_dir):
    from tuner.engine._train import PairData

    s1 = ["a man is playing", "dog runs in park", "cat sleeps on sofa", "red car drives fast"]
    s2 = ["the guitar", "child eats apple", "the guitar", "slow train arrives late"]  # b0 = b2: one copy
    labels = np.ones(4, dtype=np.float32)
    got = _first_step_losses(tiny_model_dir, PairData(s1, s2, labels))
    # same seed = same dropout: only the rule differs; a copy makes both rules strictly lower than off
    assert got["positive"] < got["off"] and got["mask"] < got["off"] and got["positive"] != got["mask"]
    unique = _first_step_losses(tiny_model_dir, PairData(s1, ["the guitar", "child eats apple", "bad movie",
                                                              "slow train arrives late"], labels))
    assert unique["positive"] == unique["mask"] == unique["off"]


def test_training_loop_sends_text_ids_triplets(tiny_model_dir):
    from tuner.engine._train import NliTrainData, TripletData

    triplets = TripletData(["a man is playing", "dog runs in park", "cat sleeps on sofa"],
                           ["the guitar", "child eats apple", "good movie"],
                           ["good movie", None, "bad film"])  # row 0's contradiction = row 2's entailment
    got = _first_step_losses(tiny_model_dir, NliTrainData(None, triplets), task="nli", protocol="nli-transfer",
                             train=["snli"])
    assert got["positive"] < got["off"] and got["mask"] < got["off"]


def test_text_ids_are_shared_across_columns_and_none_is_minus_one():
    from tuner.engine._train import text_ids

    first, second, third = text_ids(["x", "y"], ["y", "z"], ["x", None])
    assert first[1] == second[0] and first[0] == third[0] and third[1] == -1 and len({*first, *second}) == 3


# ---- the measurement script's summary and its docs table


def test_summary_pairs_rules_by_seed_and_the_table_names_intervals_that_exclude_zero(tmp_path):
    import json

    from _tiny import load_script

    script, tables = load_script("ibn_duplicates"), load_script("readme_tables")
    # STS-B only; test scores: off 0.80/0.81/0.82, positive 0.01 above off at every seed, mask equal to off
    for seed, base in zip((42, 43, 44), (0.80, 0.81, 0.82)):
        for rule, score in (("off", base), ("positive", base + 0.01), ("mask", base)):
            record = {"task": "stsb", "rule": rule, "seed": seed, "dev": score, "test": score, "steps": 25}
            (tmp_path / f"stsb-{rule}-seed{seed}.json").write_text(json.dumps(record))
    counts = {f"stsb-seed{s}": {"task": "stsb", "batch_size": 32, "batches": 25, "batches_with_a_duplicate": 2,
                                "anchors": 400, "anchors_with_a_duplicate": 4,
                                "anchors_whose_text_repeats_in_the_batch": 1} for s in (42, 43, 44)}
    (tmp_path / "counts.json").write_text(json.dumps(counts))
    summary = script.summarise(tmp_path)
    positive = summary["results"]["stsb"]["positive"]
    assert positive["test"]["mean"] == pytest.approx(0.82) and positive["test"]["std"] == pytest.approx(0.01)
    assert positive["test_vs_off"]["mean"] == pytest.approx(0.01) and positive["test_vs_off"]["std"] == pytest.approx(0, abs=1e-12)
    assert summary["results"]["stsb"]["mask"]["test_vs_off"]["mean"] == pytest.approx(0, abs=1e-12)
    assert summary["results"]["nli"]["off"]["n"] == 0
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    text = "\n".join(tables.render_ibn_duplicates(path))
    assert "| STS-B pairs | `positive` | 3 | 25 | 82.00 ± 1.00 | 82.00 ± 1.00 | +1.00 [+1.00, +1.00] | +1.00 [+1.00, +1.00] |" in text
    assert "12 of 1200 anchors (1.00%) had a copy" in text and "6 of 75 batches" in text
    assert "exclude 0: STS-B pairs positive dev (+1.00); STS-B pairs positive test (+1.00)" in text
