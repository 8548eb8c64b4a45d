"""In-batch-negatives (contrastive) loss, as AnglE's ``in_batch_negative_loss``
(Li & Li 2023, arXiv 2309.12871) and SimCSE (Gao et al. 2021, "SimCSE: Simple
Contrastive Learning of Sentence Embeddings").

Every *positive* pair ``i`` is an anchor; the other pairs' sentences in the
batch are its negatives. With ``P`` the set of positive pairs:

    L_ab = 1/|P| * sum_{i in P} -log softmax_j(tau * cos(a_i, b_j))[i]
    L_ba = 1/|P| * sum_{i in P} -log softmax_j(tau * cos(b_i, a_j))[i]
    L    = (L_ab + L_ba) / 2

Pairs that are not positive are not anchors, but their sentences still serve
as negatives for the positive ones. A batch without any positive gives a zero
that is still attached to the graph (never NaN).

Differences to AnglE's original, on purpose:

* AnglE builds one ``2N x 2N`` matrix over all sentences (same-side sentences
  are negatives too) and averages over all ``2N`` rows, so non-positive rows
  count as zeros and dilute the loss. Here only the cross-side ``N x N``
  matrix is used, symmetrically, and the mean is over positive anchors.
* AnglE decides "positive" with ``int(label) != 0`` on the raw labels, so on a
  0..5 STS set any score >= 1 is a positive. The rule here is explicit, on the
  normalised 0..1 labels: ``label >= positive_threshold``.

**NLI triplets** (:func:`hard_negatives_loss`, the loss's ``triplet`` function in the registry):
supervised SimCSE (Gao et al. 2021, eq. 5). Each row is (anchor, entailed positive, contradicting
hard negative); the candidates of anchor ``i`` are every positive of the batch *and* every hard
negative of the batch, and the target is its own positive:

    L = 1/N * sum_i -log( exp(tau cos(h_i, p_i)) /
                          (sum_j exp(tau cos(h_i, p_j)) + sum_{j in H} exp(tau cos(h_i, n_j))) )

with ``H`` the rows that have a hard negative. A row without a contradiction has no hard-negative
column: its anchor still sees every other row's positive and every hard negative of the batch
(the in-batch negatives), and it adds no negative for the others. One direction only, as SimCSE.

**Duplicates** (``duplicates``, the run setting ``ibn_duplicates``; issue #24). STS-B, SICK-R and
NLI repeat sentences across pairs, so a batch may hold another copy of an anchor's own positive
text among its candidates. The seed: "the in-batch negative samples in a batch which are identical
but not explicitly labelled as positive are identified and labelled as positive, thus reducing
noise". With ``D_i`` the candidates whose text is identical to anchor ``i``'s own positive (its own
column included; text identity comes from ``text_ids``, one integer per row, equal = same string):

* ``"positive"`` (default, the seed's rule): every copy is a target; the loss is the negative log of
  the probability mass on them, ``-log sum_{j in D_i} softmax(logits_i)_j``. Identical texts are one
  answer, so putting the mass on any copy is right; the minimum stays 0 whatever ``|D_i|`` is
  (AnglE's sum of ``-log p_j`` over the targets would ask every copy for probability 1).
* ``"mask"``: the other copies leave the softmax (as a no-duplicates batch sampler would keep them
  out of the batch); the target is the own column.
* ``"off"``: copies are negatives like any other candidate (the loss before #24, bit for bit).

In the pair form ``D_i`` for ``a -> b`` is the ``b_j`` equal to ``b_i``, for ``b -> a`` the ``a_j``
equal to ``a_i``; in the triplet form it is every positive *and* hard negative equal to ``p_i`` (a
hard negative whose text is the own positive included). Without ``text_ids`` no copy is known and
every rule gives the ``off`` loss. Only the anchor's *positive* text counts: a candidate that is the
labelled positive of another anchor with the same text (a premise repeated in the batch) stays a
negative, as the seed describes.

Positive rules (``POSITIVE_RULES``):

* ``DEFAULT_POSITIVE_THRESHOLD = 0.6`` -- raw score >= 3 on a 0..5 STS scale,
  "the two sentences are roughly equivalent" in the STS annotation guideline.
* ``ANGLE_INT_CAST_THRESHOLD = 0.2`` -- reproduces AnglE's int cast on a 0..5
  set (raw >= 1 <=> normalised >= 1/5). On other scales the int cast means
  raw >= 1, i.e. ``(1 - lo) / (hi - lo)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from tuner.losses.checks import DEFAULT_DUPLICATES, check_duplicates
from tuner.losses.registry import default_tau

DEFAULT_POSITIVE_THRESHOLD: float = 0.6
ANGLE_INT_CAST_THRESHOLD: float = 0.2
POSITIVE_RULES: dict[str, float] = {
    "sts_roughly_equivalent": DEFAULT_POSITIVE_THRESHOLD,
    "angle_int_cast": ANGLE_INT_CAST_THRESHOLD,
}

# Absorbs float32 rounding from (score - lo) / (hi - lo), e.g. 3/5 vs 0.6.
_TOLERANCE = 1e-6


def positive_mask(labels: Tensor, threshold: float = DEFAULT_POSITIVE_THRESHOLD) -> Tensor:
    """Boolean ``[N]`` mask of the pairs that count as positives: ``label >= threshold``."""
    return labels.view(-1) >= threshold - _TOLERANCE


def duplicate_cross_entropy(logits: Tensor, target: Tensor, same_text: Tensor | None, duplicates: str) -> Tensor:
    """Mean cross-entropy of ``logits`` ``[K, C]`` towards column ``target[k]``, with the duplicate rule.

    Args:
        logits: one row per anchor, one column per candidate.
        target: ``[K]`` the column of each anchor's own positive.
        same_text: ``[K, C]`` True where the candidate's text is identical to the anchor's own
            positive (the own column included or not: it is a target either way); None: none known.
        duplicates: ``"positive"``, ``"mask"`` or ``"off"`` (module doc).
    """
    if same_text is None or duplicates == "off":
        return F.cross_entropy(logits, target)
    own = F.one_hot(target, logits.shape[1]).bool()
    if not (same_text & ~own).any():  # no copy in the batch: the off loss, bit for bit
        return F.cross_entropy(logits, target)
    if duplicates == "mask":
        return F.cross_entropy(logits.masked_fill(same_text & ~own, float("-inf")), target)
    targets = same_text | own
    return -(logits.log_softmax(dim=1).masked_fill(~targets, float("-inf")).logsumexp(dim=1)).mean()


def _same(row_ids: Tensor, column_ids: Tensor) -> Tensor:
    """``[K, C]``: True where the text of row ``k``'s own positive equals the text of candidate ``c``."""
    return row_ids.view(-1, 1) == column_ids.view(1, -1)


def in_batch_negatives_loss(
    a: Tensor,
    b: Tensor,
    labels: Tensor,
    tau: Optional[float] = None,
    positive_threshold: float = DEFAULT_POSITIVE_THRESHOLD,
    duplicates: str = DEFAULT_DUPLICATES,
    text_ids: Sequence[Tensor] | None = None,
) -> Tensor:
    """Symmetric in-batch-negatives cross-entropy over the positive pairs.

    Args:
        a: first sentence of each pair, ``[N, d]``.
        b: second sentence of each pair, ``[N, d]``.
        labels: similarity scores normalised to 0..1, ``[N]``.
        tau: scale on the cosine logits (1 / temperature); None: the registry's default for ``ibn``.
        positive_threshold: normalised label from which a pair is a positive.
        duplicates: what a candidate identical to the anchor's own positive is (module doc).
        text_ids: ``(ids_a, ids_b)``, ``[N]`` integers each, equal = identical text; None: unknown.

    Returns:
        A scalar tensor, computed in float32 (or float64 if the inputs are).
    """
    tau = default_tau("ibn") if tau is None else tau
    duplicates = check_duplicates(duplicates, "duplicates")
    dtype = torch.promote_types(a.dtype, torch.float32)
    a = F.normalize(a.to(dtype), dim=-1, eps=1e-8)
    b = F.normalize(b.to(dtype), dim=-1, eps=1e-8)
    anchors = positive_mask(labels.to(a.device), positive_threshold).nonzero().view(-1)
    if anchors.numel() == 0:
        return 0.0 * (a.sum() + b.sum())
    logits = tau * (a @ b.T)  # logits[i, j] = tau * cos(a_i, b_j)
    same_b = same_a = None
    if text_ids is not None:
        ids_a, ids_b = (t.to(a.device).view(-1) for t in text_ids)
        same_b, same_a = _same(ids_b[anchors], ids_b), _same(ids_a[anchors], ids_a)
    loss_ab = duplicate_cross_entropy(logits[anchors], anchors, same_b, duplicates)
    loss_ba = duplicate_cross_entropy(logits.T[anchors], anchors, same_a, duplicates)
    return (loss_ab + loss_ba) / 2


def hard_negatives_loss(anchor: Tensor, positive: Tensor, negative: Tensor, tau: Optional[float] = None,
                        duplicates: str = DEFAULT_DUPLICATES,
                        text_ids: Sequence[Tensor] | None = None) -> Tensor:
    """Supervised-SimCSE loss of NLI triplets (module doc): in-batch negatives plus hard negatives.

    Args:
        anchor: ``[N, d]`` premises.
        positive: ``[N, d]`` their entailed hypotheses (row ``i`` is anchor ``i``'s positive).
        negative: ``[M, d]`` the hard negatives of the rows that have one (``M <= N``, possibly 0);
            which row each belongs to does not matter: every anchor sees all of them as negatives.
        tau: scale on the cosine logits (1 / temperature); None: the registry's default for ``ibn``
            (this is its triplet form).
        duplicates: what a candidate identical to the anchor's own positive is (module doc).
        text_ids: ``(ids_anchor [N], ids_positive [N], ids_negative [M])``, equal = identical text;
            None: unknown.
    """
    tau = default_tau("ibn") if tau is None else tau
    duplicates = check_duplicates(duplicates, "duplicates")
    dtype = torch.promote_types(anchor.dtype, torch.float32)
    h = F.normalize(anchor.to(dtype), dim=-1, eps=1e-8)
    candidates = F.normalize(torch.cat([positive.to(dtype), negative.to(dtype)]), dim=-1, eps=1e-8)
    logits = tau * (h @ candidates.T)  # [N, N + M]
    same = None
    if text_ids is not None:
        _, ids_p, ids_n = (t.to(h.device).view(-1) for t in text_ids)
        same = _same(ids_p, torch.cat([ids_p, ids_n]))
    return duplicate_cross_entropy(logits, torch.arange(h.shape[0], device=h.device), same, duplicates)
