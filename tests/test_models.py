import json
from pathlib import Path

import pytest
import torch

from tuner.errors import TunerError
from tuner.models import default_pooling, load_encoder, resolve_model, save_encoder


def test_bundled_minilm_resolves_without_network(minilm_path):
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == minilm_path
    assert resolve_model("all-MiniLM-L6-v2") == minilm_path
    assert default_pooling(minilm_path) == "avg"  # from its 1_Pooling/config.json


def test_model_without_st_config_defaults_to_cls(tiny_model_dir):
    assert default_pooling(str(tiny_model_dir)) == "cls"


def test_bad_model_paths(tmp_path):
    with pytest.raises(TunerError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TunerError, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"))


def test_each_load_is_an_independent_copy(tiny_model_dir):
    a = load_encoder(tiny_model_dir, device="cpu")
    b = load_encoder(tiny_model_dir, device="cpu")
    with torch.no_grad():
        next(a.model.parameters()).add_(1.0)
    assert not torch.equal(next(a.model.parameters()), next(b.model.parameters()))


@pytest.mark.parametrize("pooling", ["cls", "avg", "max", "last", "cls_avg"])
def test_saved_model_loads_in_transformers_and_sentence_transformers(tiny_model_dir, tmp_path, pooling):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from tuner.evaluate import encode

    enc = load_encoder(tiny_model_dir, pooling=pooling, device="cpu")
    out = save_encoder(enc, tmp_path / "out", {"lr": 1e-5, "max_seq_length": 32})
    AutoModel.from_pretrained(out)
    record = json.loads((out / "tuner.json").read_text())
    assert record["pooling"] == pooling and record["lr"] == 1e-5
    assert default_pooling(str(out)) == pooling
    st = SentenceTransformer(str(out), device="cpu")
    texts = ["a man is playing the guitar", "dog runs"]
    ours = encode(enc, texts)
    theirs = st.encode(texts, convert_to_numpy=True)
    assert ours.shape == theirs.shape
    assert abs(ours - theirs).max() < 1e-4
