import pytest
import torch

from tuner.errors import TunerError
from tuner.models._pooling import parse_pooling, pool

POOLINGS = ["cls", "cls_avg", "avg", "max", "last", 0, 1, 2, -1, -2, 50]


def _pad(hidden_rows, side):
    """Pad a list of [t_i, d] tensors into [B, T, d] + mask, right or left."""
    longest = max(h.shape[0] for h in hidden_rows)
    d = hidden_rows[0].shape[1]
    out = torch.full((len(hidden_rows), longest, d), 123.0)  # garbage in padding on purpose
    mask = torch.zeros(len(hidden_rows), longest, dtype=torch.long)
    for i, h in enumerate(hidden_rows):
        t = h.shape[0]
        if side == "right":
            out[i, :t], mask[i, :t] = h, 1
        else:
            out[i, longest - t:], mask[i, longest - t:] = h, 1
    return out, mask


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_changes_an_embedding(pooling, side):
    torch.manual_seed(0)
    rows = [torch.randn(t, 4) for t in (3, 7, 1, 5)]
    batch, mask = _pad(rows, side)
    pooled = pool(batch, mask, pooling)
    for i, h in enumerate(rows):
        alone = pool(h.unsqueeze(0), torch.ones(1, h.shape[0], dtype=torch.long), pooling)
        torch.testing.assert_close(pooled[i], alone[0])


def test_values_by_hand():
    h = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [5.0, -2.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    torch.testing.assert_close(pool(h, mask, "cls")[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(pool(h, mask, "avg")[0], torch.tensor([3.0, 2.0 / 3.0]))
    torch.testing.assert_close(pool(h, mask, "max")[0], torch.tensor([5.0, 4.0]))
    torch.testing.assert_close(pool(h, mask, "last")[0], torch.tensor([5.0, -2.0]))
    torch.testing.assert_close(pool(h, mask, "cls_avg")[0], torch.tensor([2.0, 1.0 / 3.0]))
    torch.testing.assert_close(pool(h, mask, 1)[0], torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(pool(h, mask, -2)[0], torch.tensor([3.0, 4.0]))


def test_avg_is_per_row_not_per_batch():
    # The seed divided by the batch's total token count; per-row means must not depend on batch mates.
    a = torch.ones(1, 2, 3)
    b = torch.ones(1, 6, 3)
    batch, mask = _pad([a[0], b[0]], "right")
    torch.testing.assert_close(pool(batch, mask, "avg"), torch.ones(2, 3))


def test_parse_pooling():
    assert parse_pooling("mean") == "avg"
    assert parse_pooling("3") == 3
    assert parse_pooling(" CLS ") == "cls"
    with pytest.raises(TunerError, match="unknown pooling 'median'"):
        parse_pooling("median")
