"""The model's own modules after the pooling (sentence-transformers' Dense and Normalize): applied as
sentence-transformers applies them, trained, saved and read back (issue #23)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tuner.evaluation._encode import encode
from tuner.jsonsafe import dumps
from tuner.models import load_encoder
from tuner.models._encoder import save_encoder

TEXTS = ["a man plays a guitar", "the cat sits on the mat", "hello", "two dogs run in the park", "x"]


def st_folder(base: Path, out: Path, modules: tuple[str, ...] = ("Dense", "Normalize")) -> Path:
    """The tiny BERT as a sentence-transformers folder: mean pooling, then ``modules``."""
    shutil.copytree(base, out)
    hidden = json.loads((base / "config.json").read_text())["hidden_size"]
    entries = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(dumps({"word_embedding_dimension": hidden,
                                                          "pooling_mode_mean_tokens": True}))
    for idx, kind in enumerate(modules, start=2):
        folder = out / f"{idx}_{kind}"
        folder.mkdir()
        if kind == "Dense":
            from safetensors.torch import save_file

            g = torch.Generator().manual_seed(idx)
            save_file({"linear.weight": torch.randn(6, hidden, generator=g), "linear.bias": torch.randn(6, generator=g)},
                      str(folder / "model.safetensors"))
            (folder / "config.json").write_text(dumps({"in_features": hidden, "out_features": 6, "bias": True,
                                                       "activation_function": "torch.nn.modules.activation.Tanh"}))
        entries.append({"idx": idx, "name": str(idx), "path": folder.name,
                        "type": f"sentence_transformers.models.{kind}"})
    (out / "modules.json").write_text(dumps(entries))
    return out


def st_encode(folder: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)


def test_dense_and_normalize_are_applied_as_sentence_transformers_applies_them(tiny_model_dir, tmp_path):
    folder = st_folder(tiny_model_dir, tmp_path / "st")
    encoder = load_encoder(folder, device="cpu")
    assert [type(m).__name__ for m in encoder.post] == ["Dense", "Normalize"] and encoder.dim == 6
    ours = encode(encoder, TEXTS)
    assert ours.shape == (len(TEXTS), 6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, st_encode(folder), atol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "cls_avg"])
def test_a_trained_dense_layer_is_saved_and_read_back_by_tuner_and_sentence_transformers(tiny_model_dir, tmp_path,
                                                                                        pooling):
    encoder = load_encoder(st_folder(tiny_model_dir, tmp_path / "st"), pooling=pooling, device="cpu")
    before = encoder.post[0].linear.weight.detach().clone()
    batch = encoder.tokenizer(TEXTS, padding=True, return_tensors="pt")
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    encoder.train()
    encoder(batch["input_ids"], batch["attention_mask"]).sum().backward()
    optimizer.step()
    assert not torch.equal(before, encoder.post[0].linear.weight)  # the Dense layer trains with the model

    out = save_encoder(encoder, tmp_path / "saved", {"max_seq_length": 32})
    record = json.loads((out / "tuner.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in record["post_modules"]] == ["Dense", "Normalize"]
    again = load_encoder(out, device="cpu")
    assert again.pooling == pooling and [type(m).__name__ for m in again.post] == ["Dense", "Normalize"]
    ours = encode(again, TEXTS)
    np.testing.assert_allclose(ours, encode(encoder, TEXTS), atol=1e-5)
    np.testing.assert_allclose(ours, st_encode(out), atol=1e-5)  # cls_avg's own fixed Dense comes first there


def test_a_module_tuner_cannot_apply_is_named_in_one_warning(tiny_model_dir, tmp_path, caplog):
    folder = st_folder(tiny_model_dir, tmp_path / "st", modules=("Normalize",))
    entries = json.loads((folder / "modules.json").read_text())
    entries.append({"idx": 3, "name": "3", "path": "3_LayerNorm", "type": "sentence_transformers.models.LayerNorm"})
    (folder / "modules.json").write_text(dumps(entries))
    with caplog.at_level(logging.WARNING, logger="tuner.models"):
        encoder = load_encoder(folder, device="cpu")
    assert [type(m).__name__ for m in encoder.post] == ["Normalize"]
    warned = [r.getMessage() for r in caplog.records if "not applied by tuner" in r.getMessage()]
    assert len(warned) == 1 and "sentence_transformers.models.LayerNorm" in warned[0]


def test_a_folder_without_modules_has_none(tiny_model_dir):
    assert len(load_encoder(tiny_model_dir, device="cpu").post) == 0


@pytest.mark.real
def test_minilm_embeddings_equal_sentence_transformers_normalised_ones(minilm_path):
    encoder = load_encoder("all-MiniLM-L6-v2", device="cpu")
    assert [type(m).__name__ for m in encoder.post] == ["Normalize"]
    np.testing.assert_allclose(encode(encoder, TEXTS), st_encode(Path(minilm_path)), atol=1e-5)
