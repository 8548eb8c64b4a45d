import numpy as np
import pytest
import torch

from conftest import tiny_sentences
from tuner.errors import TunerError
from tuner.models._encoder import load_encoder
from tuner.config import RunConfig
from tuner.engine._train import PairData, finetune, length_grouped_batches


def _pairs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return PairData(tiny_sentences(n, seed), tiny_sentences(n, seed + 1), rng.uniform(0, 1, n).astype(np.float32))


def test_finetune_changes_weights_and_is_seeded(tiny_model_dir):
    results = []
    for _ in range(2):
        enc = load_encoder(tiny_model_dir, pooling="avg", device="cpu")
        before = [p.detach().clone() for p in enc.parameters()]
        config = RunConfig(weights={"cosent": 1, "ibn": 1, "angle": 1}, lr=1e-3, batch_size=8, max_steps=6)
        res = finetune(enc, _pairs(), config, progress=False)
        assert res.steps == 6 and res.examples == 48
        assert any(not torch.equal(a, b) for a, b in zip(before, enc.parameters()))
        assert set(res.loss_parts) == {"cosent", "ibn", "angle"}
        results.append(res.losses)
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_eval_callback_every_n_steps(tiny_model_dir):
    enc = load_encoder(tiny_model_dir, device="cpu")
    seen = []
    finetune(enc, _pairs(), RunConfig(batch_size=8, max_steps=7, eval_every=3), on_eval=seen.append, progress=False)
    assert seen == [3, 6]


def test_epochs_cover_data(tiny_model_dir):
    enc = load_encoder(tiny_model_dir, device="cpu")
    res = finetune(enc, _pairs(40), RunConfig(batch_size=16, epochs=2), progress=False)
    assert res.steps == 6 and res.examples == 80


def test_length_grouped_batches_cover_everything_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=1000)
    batches = length_grouped_batches(lengths, 32, rng, bucket_batches=4)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    # within a batch lengths are close: far less spread than random batches
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 20


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr is 0"), ({"batch_size": 1}, "batch_size is 1"), ({"epochs": 0}, "epochs is 0"),
    ({"precision": "fp8"}, "precision: 'fp8'"), ({"pooling": "median"}, "unknown pooling"),
    ({"warmup_ratio": 1.5}, "warmup_ratio"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(TunerError, match=message):
        RunConfig(**kwargs)


def test_peak_memory_flat_across_repeated_trials(tiny_model_dir):
    import gc
    import resource
    rss = []
    for i in range(6):
        enc = load_encoder(tiny_model_dir, device="cpu")
        finetune(enc, _pairs(64), RunConfig(batch_size=16, max_steps=4, seed=i), progress=False)
        del enc
        gc.collect()
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert rss[-1] - rss[1] < 50_000  # KiB: no growth beyond noise after warm-up
