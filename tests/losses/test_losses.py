"""Tests for tuner.losses: hand-computed values, parity with sentence-transformers,
gradients, degenerate batches, CombinedLoss wiring and validation, bf16 input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tuner.errors import TunerError
from tuner.losses.registry import default_taus, loss_names
from tuner.losses import (
    ANGLE_INT_CAST_THRESHOLD,
    DEFAULT_POSITIVE_THRESHOLD,
    POSITIVE_RULES,
    CombinedLoss,
    angle_loss,
    cosent_loss,
    cosine_mse_loss,
    in_batch_negatives_loss,
    positive_mask,
)

# 3 pairs in 2-d, labels already normalised to 0..1.
A = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
B = [[1.0, 1.0], [1.0, 0.0], [-1.0, 2.0]]
Y = [0.8, 0.1, 0.4]

LOSSES = {
    "cos_mse": cosine_mse_loss,
    "cosent": cosent_loss,
    "ibn": in_batch_negatives_loss,
    "angle": angle_loss,
}


def _t(x, dtype=torch.float32, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=dtype, requires_grad=grad)


# ---------------------------------------------------------------- reference values
def _cos(u, v) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def _angle_sim(u, v) -> float:
    """|Re + Im| of sum_k (u_k / v_k) in complex form, normalised, as in the AnglE paper."""
    h = len(u) // 2
    zu = np.array(u[:h]) + 1j * np.array(u[h:])
    zv = np.array(v[:h]) + 1j * np.array(v[h:])
    q = np.sum(zu * np.conj(zv)) / (np.linalg.norm(u) * np.linalg.norm(v))
    return abs(q.real + q.imag)


def _ranking(scores, labels) -> float:
    total = 1.0
    for i in range(len(scores)):
        for j in range(len(scores)):
            if labels[i] > labels[j]:
                total += math.exp(scores[j] - scores[i])
    return math.log(total)


def _ce(logits, target) -> float:
    m = max(logits)
    return -(logits[target] - m - math.log(sum(math.exp(x - m) for x in logits)))


def test_cosine_mse_by_hand():
    expected = sum((_cos(a, b) - y) ** 2 for a, b, y in zip(A, B, Y)) / 3
    assert cosine_mse_loss(_t(A), _t(B), _t(Y)).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("tau", [1.0, 20.0])
def test_cosent_by_hand(tau):
    expected = _ranking([tau * _cos(a, b) for a, b in zip(A, B)], Y)
    assert cosent_loss(_t(A), _t(B), _t(Y), tau=tau).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("tau", [1.0, 20.0])
def test_angle_by_hand(tau):
    expected = _ranking([tau * _angle_sim(a, b) for a, b in zip(A, B)], Y)
    assert angle_loss(_t(A), _t(B), _t(Y), tau=tau).item() == pytest.approx(expected, abs=1e-5)


def test_angle_sim_formula_2d():
    # In 2-d, z = x + iy; for unit vectors at angles p, q the quotient is e^{i(p-q)},
    # so the angle similarity is |cos(p - q) + sin(p - q)|.
    p, q = 0.3, 1.1
    u, v = [math.cos(p), math.sin(p)], [math.cos(q), math.sin(q)]
    assert _angle_sim(u, v) == pytest.approx(abs(math.cos(p - q) + math.sin(p - q)))


@pytest.mark.parametrize("threshold", [0.3, DEFAULT_POSITIVE_THRESHOLD])
def test_in_batch_negatives_by_hand(threshold):
    tau = 20.0
    positives = [i for i, y in enumerate(Y) if y >= threshold]
    ab = [_ce([tau * _cos(A[i], B[j]) for j in range(3)], i) for i in positives]
    ba = [_ce([tau * _cos(B[i], A[j]) for j in range(3)], i) for i in positives]
    expected = (sum(ab) / len(ab) + sum(ba) / len(ba)) / 2
    got = in_batch_negatives_loss(_t(A), _t(B), _t(Y), tau=tau, positive_threshold=threshold)
    assert got.item() == pytest.approx(expected, abs=1e-4)


def test_positive_rules():
    assert DEFAULT_POSITIVE_THRESHOLD == 0.6
    assert POSITIVE_RULES["angle_int_cast"] == ANGLE_INT_CAST_THRESHOLD == 0.2
    raw = np.array([0.0, 0.8, 1.0, 2.9, 3.0, 4.2, 5.0], dtype=np.float32)
    normalised = torch.tensor((raw - 0.0) / (5.0 - 0.0), dtype=torch.float32)
    assert positive_mask(normalised).tolist() == [r >= 3 for r in raw]
    # AnglE casts raw labels to int: any raw score >= 1 of 0..5 is a positive.
    int_cast = [int(r) != 0 for r in raw]
    assert positive_mask(normalised, ANGLE_INT_CAST_THRESHOLD).tolist() == int_cast


# ---------------------------------------------------------------- sentence-transformers parity
def _st_losses():
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # older layout
        from sentence_transformers import losses
    return losses


def _random_batch(n: int = 16, d: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    raw = torch.randint(0, 6, (n,), generator=g).float()  # raw 0..5 with ties
    return a, b, raw


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_cosent_matches_sentence_transformers(scale):
    losses = _st_losses()
    a, b, raw = _random_batch()
    st = losses.CoSENTLoss(model=None, scale=scale).compute_loss_from_embeddings([a, b], raw)
    ours = cosent_loss(a, b, raw / 5.0, tau=scale)
    assert ours.item() == pytest.approx(st.item(), abs=1e-5)


@pytest.mark.parametrize("scale,d", [(1.0, 12), (20.0, 12), (1.0, 7)])
def test_angle_matches_sentence_transformers(scale, d):
    losses = _st_losses()
    a, b, raw = _random_batch(d=d)
    st = losses.AnglELoss(model=None, scale=scale).compute_loss_from_embeddings([a, b], raw)
    ours = angle_loss(a, b, raw / 5.0, tau=scale)
    assert ours.item() == pytest.approx(st.item(), abs=1e-5)


def test_cosine_mse_matches_sentence_transformers():
    losses = _st_losses()
    a, b, raw = _random_batch()
    st = losses.CosineSimilarityLoss(model=None).compute_loss_from_embeddings([a, b], raw / 5.0)
    assert cosine_mse_loss(a, b, raw / 5.0).item() == pytest.approx(st.item(), abs=1e-6)


# ---------------------------------------------------------------- gradients and degenerate batches
@pytest.mark.parametrize("name", loss_names())
def test_gradients_flow(name):
    a, b, raw = _random_batch(n=8, d=6, seed=1)
    a.requires_grad_(True)
    b.requires_grad_(True)
    labels = raw / 5.0
    labels[0] = 1.0  # at least one IBN positive
    LOSSES[name](a, b, labels).backward()
    for g in (a.grad, b.grad):
        assert torch.isfinite(g).all()
        assert g.abs().sum() > 0


def test_combined_gradients_flow():
    emb = torch.randn(16, 6, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.4, 0.8, 0.2, 0.6, 1.0, 0.0])
    loss = CombinedLoss({"cos_mse": 1, "cosent": 1, "ibn": 1, "angle": 1})
    total, _ = loss(emb, labels)
    total.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def _degenerate_cases():
    ones = torch.ones(4, 6)
    yield "identical", ones.clone(), ones.clone(), torch.tensor([0.0, 0.3, 0.7, 1.0])
    yield "zeros", torch.zeros(4, 6), torch.zeros(4, 6), torch.tensor([0.0, 0.3, 0.7, 1.0])
    yield "zero_a", torch.zeros(4, 6), torch.randn(4, 6), torch.tensor([0.0, 0.3, 0.7, 1.0])
    yield "constant_labels", torch.randn(4, 6), torch.randn(4, 6), torch.full((4,), 0.5)
    yield "one_pair", torch.randn(1, 6), torch.randn(1, 6), torch.tensor([0.9])
    no_positive = torch.tensor([0.0, 0.1, 0.2, 0.5])
    yield "no_ibn_positive", torch.randn(4, 6), torch.randn(4, 6), no_positive


@pytest.mark.parametrize("case", list(_degenerate_cases()), ids=lambda c: c[0])
@pytest.mark.parametrize("name", loss_names())
def test_no_nan_on_degenerate_batches(name, case):
    _, a, b, labels = case
    a.requires_grad_(True)
    b.requires_grad_(True)
    loss = LOSSES[name](a, b, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_ranking_losses_are_zero_without_ordered_pairs():
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    labels = torch.full((4,), 0.5)
    assert cosent_loss(a, b, labels).item() == 0.0
    assert angle_loss(a, b, labels).item() == 0.0


def test_ibn_without_positives_is_zero_with_grad():
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(3, 4, requires_grad=True)
    loss = in_batch_negatives_loss(a, b, torch.tensor([0.0, 0.2, 0.5]))
    assert loss.item() == 0.0 and loss.grad_fn is not None


def test_cosent_large_tau_does_not_overflow():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    # the higher-labelled pair has cos -1, the lower +1: difference 2 * 1000
    loss = cosent_loss(a, b, torch.tensor([1.0, 0.0]), tau=1000.0)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(2000.0, rel=1e-6)


# ---------------------------------------------------------------- CombinedLoss
def test_combined_zigzag_split_and_weighted_sum():
    emb = torch.randn(12, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.0, 1.0])
    weights = {"cos_mse": 0.5, "cosent": 2.0, "ibn": 0.0, "angle": 0.25}
    taus = {"cosent": 10.0, "angle": 2.0}
    loss = CombinedLoss(weights, taus)
    assert loss.active == {"cos_mse": 0.5, "cosent": 2.0, "angle": 0.25}
    total, parts = loss(emb, labels)
    a, b = emb[0::2], emb[1::2]
    manual = {
        "cos_mse": cosine_mse_loss(a, b, labels),
        "cosent": cosent_loss(a, b, labels, tau=10.0),
        "angle": angle_loss(a, b, labels, tau=2.0),
    }
    assert set(parts) == set(manual)
    for name, value in manual.items():
        assert parts[name] == pytest.approx(value.item(), abs=1e-6)
    expected = sum(weights[k] * v for k, v in manual.items())
    assert total.item() == pytest.approx(expected.item(), abs=1e-5)


def test_combined_uses_pairs_not_neighbours():
    # pairs (a_i, b_i) identical, but neighbouring rows orthogonal: a correct zigzag
    # split sees cos = 1 for every pair.
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    emb = torch.stack([e0, e0, e1, e1])
    total, parts = CombinedLoss({"cos_mse": 1.0})(emb, torch.tensor([1.0, 1.0]))
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    assert parts == {"cos_mse": pytest.approx(0.0, abs=1e-6)}


def test_combined_ibn_threshold_and_default_taus():
    emb = torch.randn(8, 4, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0.9, 0.3, 0.5, 0.1])
    loss = CombinedLoss({"ibn": 1.0}, ibn_positive_threshold=0.4)
    assert loss.taus == default_taus()
    total, _ = loss(emb, labels)
    a, b = emb[0::2], emb[1::2]
    expected = in_batch_negatives_loss(a, b, labels, tau=20.0, positive_threshold=0.4)
    assert total.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("weights", [{}, {"cos_mse": 0, "cosent": 0, "ibn": 0.0, "angle": 0}])
def test_combined_all_zero_weights_is_cosine_mse(weights):
    emb = torch.randn(8, 4, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0.9, 0.3, 0.5, 0.1])
    loss = CombinedLoss(weights)
    assert loss.active == {"cos_mse": 1.0}
    total, parts = loss(emb, labels)
    expected = cosine_mse_loss(emb[0::2], emb[1::2], labels).item()
    assert total.item() == pytest.approx(expected, abs=1e-6)
    assert list(parts) == ["cos_mse"]


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"weights": {"cosent": -1.0}}, "weights: cosent is -1"),
        ({"weights": {"ibn": float("nan")}}, "weights.ibn is nan"),
        ({"weights": {"angle": float("inf")}}, "weights.angle is inf"),
        ({"weights": {"triplet": 1.0}}, "unknown loss 'triplet'"),
        ({"weights": {"cosent": "heavy"}}, "weights.cosent: must be a number"),
        ({"weights": {"cosent": 1.0}, "taus": {"cosent": 0.0}}, "taus: cosent is 0"),
        ({"weights": {"cosent": 1.0}, "taus": {"angle": -2.0}}, "taus: angle is -2"),
        ({"weights": {"cosent": 1.0}, "taus": {"ibn": float("inf")}}, "taus.ibn"),
        ({"weights": {"cosent": 1.0}, "taus": {"ibn": float("nan")}}, "taus.ibn"),
        ({"weights": {"cosent": 1.0}, "taus": {"cos_mse": 1.0}}, "cos_mse takes no temperature"),
        ({"weights": {"ibn": 1.0}, "ibn_positive_threshold": 3.0}, "ibn_positive_threshold is 3.0"),
    ],
)
def test_combined_validation(kwargs, fragment):
    with pytest.raises(TunerError) as info:
        CombinedLoss(**kwargs)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_combined_rejects_odd_batch():
    with pytest.raises(ValueError):
        CombinedLoss({"cosent": 1.0})(torch.randn(5, 4), torch.rand(2))


# ---------------------------------------------------------------- precision
@pytest.mark.parametrize("name", loss_names())
def test_bf16_input_is_computed_in_float32(name):
    a, b, raw = _random_batch(n=8, d=16, seed=6)
    labels = raw / 5.0
    labels[0] = 1.0
    a16, b16 = a.bfloat16(), b.bfloat16()
    got = LOSSES[name](a16, b16, labels)
    assert got.dtype == torch.float32
    reference = LOSSES[name](a16.float(), b16.float(), labels)
    assert got.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-5)
    # and close to the full-precision value (bf16 rounding of the inputs only)
    full = LOSSES[name](a, b, labels)
    assert got.item() == pytest.approx(full.item(), rel=0.05, abs=0.05)


def test_combined_bf16_total_is_float32():
    emb = torch.randn(8, 16, generator=torch.Generator().manual_seed(7))
    labels = torch.tensor([0.9, 0.3, 0.5, 0.1])
    loss = CombinedLoss({"cos_mse": 1, "cosent": 1, "ibn": 1, "angle": 1})
    total16, _ = loss(emb.bfloat16(), labels)
    total32, _ = loss(emb.bfloat16().float(), labels)
    assert total16.dtype == torch.float32
    assert total16.item() == pytest.approx(total32.item(), rel=1e-5)
