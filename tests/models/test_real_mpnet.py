"""Real all-mpnet-base-v2 (assembled from its five PyPI parts) on real data. Marked `real`; runs in CI.

The zero-shot check runs on the first ``TUNER_MPNET_TEST_PAIRS`` (default 50) pairs of each of the
seven STS sets to keep CI short (mpnet is ~5x slower than MiniLM on CPU); the full files are scored
by ``scripts/mpnet_zero_shot.py`` into ``docs/results/mpnet-zero-shot.json``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from tuner.models._bundled import MPNET, ensure_bundle, installed_parts

pytestmark = pytest.mark.real
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mpnet_parts() -> None:
    if any(p is None for p in installed_parts(MPNET)):
        pytest.fail(f"the all-mpnet-base-v2 parts are not installed; run: {MPNET.install_command}")


def test_real_parts_assemble_to_the_upstream_weights(mpnet_parts, tmp_path):
    folder = ensure_bundle(MPNET, tmp_path)
    digest = hashlib.sha256()
    with open(folder / "model.safetensors", "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    assert not list(folder.rglob("desktop.ini"))
    for name in ("config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        assert (folder / name).is_file(), name
    assert not [p for p in tmp_path.joinpath("models").iterdir() if p.name.startswith(".tmp-")]


def test_zero_shot_matches_sentence_transformers(mpnet_parts, shared_data):
    spec = importlib.util.spec_from_file_location("mpnet_zero_shot", REPO / "scripts" / "mpnet_zero_shot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    limit = int(os.environ.get("TUNER_MPNET_TEST_PAIRS", "50"))
    record = script.compare(script.STS_SETS, limit=limit, data_dir=str(shared_data), log=lambda *_: None)
    assert record["tuner_pooling"] == "avg"  # from the model's 1_Pooling config
    assert sorted(record["sets"]) == sorted(script.STS_SETS)
    for name, row in record["sets"].items():
        assert row["n"] == limit
        assert abs(row["tuner"] - row["sentence_transformers"]) < 0.002, (name, row)
        assert row["tuner"] > 0.3, (name, row)  # a broken load (random weights) scores near 0
