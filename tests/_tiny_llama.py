"""A tiny random-init Llama (hidden 32, 2 layers) and a word-level tokenizer without a pad token,
saved as an ordinary model folder: the decoder counterpart of conftest's tiny BERT."""
from __future__ import annotations

from pathlib import Path

from conftest import WORDS


def make_tiny_llama(folder: Path, seed: int = 0, padding_side: str = "right") -> Path:
    """Save the tiny Llama and its tokenizer (``<unk> <s> </s>`` + the test words; no pad token) to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", ":", '"'] + sorted(set(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", padding_side=padding_side)
    assert tokenizer.pad_token is None, "the tiny decoder tokenizer must come without a pad token"
    assert tokenizer.unk_token_id not in tokenizer(" ".join(WORDS))["input_ids"], "tiny tokenizer lost its vocabulary"
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=None)
    LlamaModel(config).save_pretrained(folder)
    return folder
