"""The per-process base-model cache (tuner.models._cache) and the bounded token-id cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import make_tiny_model, tiny_sentences
from tuner.models import _cache as model_cache
from tuner.models import _tokenize as tokenize
from tuner.models._encoder import load_encoder


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv(model_cache.ENV, raising=False)
    model_cache.clear()
    yield
    model_cache.clear()


def snapshot(encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}


def checkpoint(encoder) -> dict[str, torch.Tensor]:
    """The weights the tiny checkpoint holds: it has no pooler, so from_pretrained initialises one at
    random on every disk load (the cache serves the first load's); tuner never uses it."""
    return {k: v for k, v in snapshot(encoder).items() if not k.startswith("pooler.")}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def disk_loads() -> int:
    return model_cache.info()["disk_loads"]


def test_fine_tuning_in_one_trial_does_not_leak_into_the_next(tiny_model_dir):
    from tuner.config import RunConfig
    from tuner.engine._train import PairData, finetune

    first = load_encoder(tiny_model_dir, pooling="avg", device="cpu")
    base = snapshot(first)
    loads = disk_loads()
    pairs = PairData(tiny_sentences(16, 1), tiny_sentences(16, 2), np.linspace(0.0, 1.0, 16, dtype=np.float32))
    finetune(first, pairs, RunConfig(weights={"cosent": 1}, lr=1e-2, epochs=1, batch_size=8, max_seq_length=16),
             progress=False)
    assert not all(torch.equal(base[k], v) for k, v in first.model.state_dict().items()), "training changed nothing"

    second = load_encoder(tiny_model_dir, pooling="avg", device="cpu")
    assert disk_loads() == loads, "the second load read the disk"
    assert_bitwise_equal(snapshot(second), base)
    assert second.tokenizer is first.tokenizer
    assert second.model.config is not first.model.config  # each trial may change its own config
    for name, param in second.model.named_parameters():
        assert param.requires_grad, name
        assert all(param.data_ptr() != p.data_ptr() for p in first.model.parameters()), name
    assert not second.model.training
    assert all(b.device.type == "cpu" for b in second.model.buffers())  # non-persistent ones too


def test_cached_load_equals_a_disk_load(tiny_model_dir, monkeypatch):
    load_encoder(tiny_model_dir, device="cpu")
    cached = load_encoder(tiny_model_dir, device="cpu")
    monkeypatch.setenv(model_cache.ENV, "0")
    disk = load_encoder(tiny_model_dir, device="cpu")
    assert_bitwise_equal(checkpoint(cached), checkpoint(disk))
    ids = torch.tensor([[2, 5, 6, 3]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(cached(ids, mask), disk(ids, mask))


def test_another_model_is_not_served_from_the_cache_and_evicts_the_first(tiny_model_dir, tmp_path):
    other_dir = make_tiny_model(tmp_path / "other", seed=1)
    a = snapshot(load_encoder(tiny_model_dir, device="cpu"))
    loads = disk_loads()
    b = snapshot(load_encoder(other_dir, device="cpu"))
    assert disk_loads() == loads + 1
    assert not all(torch.equal(a[k], b[k]) for k in a)
    kept = model_cache.info()["kept"]
    assert [k["source"] for k in kept] == [str(other_dir.resolve())]  # one model at a time
    assert_bitwise_equal(snapshot(load_encoder(other_dir, device="cpu")), b)
    assert disk_loads() == loads + 1
    again = load_encoder(tiny_model_dir, device="cpu")
    assert disk_loads() == loads + 2  # evicted, so read again
    assert_bitwise_equal(checkpoint(again), {k: v for k, v in a.items() if not k.startswith("pooler.")})


def test_a_folder_saved_again_in_place_is_read_again(tmp_path):
    folder = make_tiny_model(tmp_path / "m", seed=0)
    a = snapshot(load_encoder(folder, device="cpu"))
    make_tiny_model(folder, seed=3)  # same path, new weights
    b = snapshot(load_encoder(folder, device="cpu"))
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_turned_off_reads_the_disk_every_time_and_keeps_nothing(tiny_model_dir, monkeypatch):
    load_encoder(tiny_model_dir, device="cpu")
    assert model_cache.info()["kept"]
    monkeypatch.setenv(model_cache.ENV, "0")
    loads = disk_loads()
    load_encoder(tiny_model_dir, device="cpu")
    load_encoder(tiny_model_dir, device="cpu")
    assert disk_loads() == loads + 2
    assert model_cache.info() | {"disk_loads": 0, "cache_loads": 0} == {
        "enabled": False, "kept": [], "disk_loads": 0, "cache_loads": 0}


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.embed.weight
        self.frozen = nn.Linear(4, 4)
        self.frozen.weight.requires_grad_(False)
        self.register_buffer("steps", torch.arange(5), persistent=False)


def test_build_keeps_ties_frozen_parameters_and_non_persistent_buffers():
    model = Tied().train()
    model.frozen.eval()
    model.embed.weight.marker = "kept"  # tensor attributes (transformers' _is_hf_initialized) survive
    base = model_cache.BaseModel.capture(("tied",), model, tokenizer=None)
    assert base.nbytes == (7 * 4 + 4 * 4 + 4) * 4 + 5 * 8  # the tied weight once
    with torch.no_grad():
        model.embed.weight.add_(1.0)  # the caller's model is not the kept copy
    built = base.build("cpu")
    assert built.head.weight is built.embed.weight
    assert not built.frozen.weight.requires_grad and built.frozen.bias.requires_grad
    assert torch.equal(built.steps, torch.arange(5)) and built.training and not built.frozen.training
    assert built.embed.weight.marker == "kept" and isinstance(built.embed.weight, nn.Parameter)
    assert torch.equal(built.embed.weight + 1.0, model.embed.weight)
    assert base.build("cpu").embed.weight.data_ptr() != built.embed.weight.data_ptr()


def test_token_cache_is_bounded_by_bytes(monkeypatch, tiny_model_dir):
    tok = load_encoder(tiny_model_dir, device="cpu").tokenizer
    tokenize.clear_cache()
    texts = [tiny_sentences(40, seed) for seed in range(4)]
    first = tokenize.tokenize(tok, texts[0], 16)
    one = tokenize.cached_bytes()
    assert one >= sum(x.nbytes for x in first) and tokenize.tokenize(tok, texts[0], 16) is first
    monkeypatch.setattr(tokenize, "_CACHE_BYTES", int(one * 2.5))
    for t in texts[1:]:
        tokenize.tokenize(tok, t, 16)
    assert tokenize.cached_bytes() <= int(one * 2.5)
    assert tokenize.tokenize(tok, texts[0], 16) is not first  # the oldest went first
    tokenize.clear_cache()
    monkeypatch.setattr(tokenize, "_CACHE_BYTES", 10)
    tokenize.tokenize(tok, texts[0], 16)
    assert tokenize.cached_bytes() == 0  # bigger than the whole budget: returned, not kept
