"""tuner.models._lora: LoRA fine-tuning through peft on a tiny random-init Llama (and BERT): only adapters
train, the loss goes down, saved adapters and merged models reproduce the encodings, studies search it."""
from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch

from _tiny_llama import make_tiny_llama
from conftest import tiny_sentences
from tuner.models import _lora as lora
from tuner.config import RunConfig
from tuner.errors import TunerError
from tuner.evaluation import encode
from tuner.losses.combined import CombinedLoss
from tuner.models._encoder import load_encoder, save_encoder
from tuner.models._tokenize import pad_batch, pad_id_of, tokenize
from tuner.engine._train import PairData, finetune

TEXTS = ["a man is playing the guitar", "dog runs in park", "cat sleeps on sofa", "red car drives fast"]


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _pairs(n: int = 32) -> PairData:
    """Pairs whose score is how many words the two sentences share: learnable, not noise."""
    a, b = tiny_sentences(n, seed=11), tiny_sentences(n, seed=12)
    b = [x if i % 2 else y for i, (x, y) in enumerate(zip(a, b))]  # half the pairs are identical
    score = [len(set(x.split()) & set(y.split())) / max(len(set(x.split()) | set(y.split())), 1) for x, y in zip(a, b)]
    return PairData(a, b, np.asarray(score, dtype=np.float32))


def _full_loss(encoder, data: PairData, config: RunConfig) -> float:
    """The run's loss on every training pair at once (a fixed batch: comparable before and after)."""
    ids = [x for pair in zip(tokenize(encoder.tokenizer, data.text1, 32), tokenize(encoder.tokenizer, data.text2, 32))
           for x in pair]
    input_ids, mask = pad_batch(ids, pad_id_of(encoder.tokenizer))
    encoder.eval()
    with torch.no_grad():
        loss, _ = CombinedLoss.from_config(config)(encoder(input_ids, mask), torch.from_numpy(data.labels))
    return float(loss)


CONFIG = RunConfig(weights={"cosent": 1.0}, batch_size=8, lr=5e-3, max_steps=24, warmup_ratio=0.0,
                   max_seq_length=32, lora_r=4, lora_alpha=8, seed=3)


def test_lora_trains_only_the_adapters_and_lowers_the_loss(tiny_llama_dir):
    encoder = load_encoder(tiny_llama_dir, device="cpu")
    base = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    data = _pairs()
    before = _full_loss(encoder, data, CONFIG)
    result = finetune(encoder, data, CONFIG, progress=False)
    after = _full_loss(encoder, data, CONFIG)
    assert after < before - 0.05, (before, after)
    assert lora.is_lora(encoder.model)
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # every linear layer (all-linear): r * (in + out) per layer, 2 decoder layers of hidden 32
    per_layer = 4 * ((32 + 32) * 2 + (32 + 16) * 2 + (32 + 64) * 2 + (64 + 32))
    assert result.trainable_params == 2 * per_layer == sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    frozen = dict(encoder.model.get_base_model().named_parameters())
    for name, weight in base.items():  # the base weights did not move
        key = name if name in frozen else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(frozen[key], weight), name


def test_full_fine_tuning_is_the_default_and_trains_everything(tiny_llama_dir):
    encoder = load_encoder(tiny_llama_dir, device="cpu")
    config = CONFIG.replace(lora_r=0)
    result = finetune(encoder, _pairs(), config, progress=False)
    assert not lora.is_lora(encoder.model)
    assert result.trainable_params == sum(p.numel() for p in encoder.parameters())
    assert RunConfig().lora_r == 0


def test_lora_on_chosen_targets_and_a_bad_target(tiny_llama_dir, tiny_model_dir):
    encoder = load_encoder(tiny_llama_dir, device="cpu")
    torch.manual_seed(0)
    count = lora.attach(encoder, CONFIG.replace(lora_targets=["q_proj", "v_proj"]))
    assert count == 2 * 4 * ((32 + 32) + (32 + 16))
    bert = load_encoder(tiny_model_dir, device="cpu")  # encoders take LoRA too
    with pytest.raises(TunerError, match="lora_targets: .*e.g. .*query"):
        lora.attach(bert, CONFIG.replace(lora_targets=["q_proj"]))


def test_saved_adapter_and_merged_model_give_the_trained_encodings(tiny_llama_dir, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    encoder = load_encoder(tiny_llama_dir, device="cpu")
    finetune(encoder, _pairs(), CONFIG, progress=False)
    trained = encode(encoder, TEXTS)
    assert np.abs(trained - encode(load_encoder(tiny_llama_dir, device="cpu"), TEXTS)).max() > 1e-4
    out = save_encoder(encoder, tmp_path / "saved", {"config": CONFIG.to_dict(), "max_seq_length": 32})
    assert lora.is_lora(encoder.model)  # saving left the encoder unmerged
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert not any("lora" in k for k in AutoModel.from_pretrained(out).state_dict())  # merged: plain weights
    # the adapter on a fresh base model
    fresh = lora.load_adapter(load_encoder(tiny_llama_dir, device="cpu"), out)
    assert np.abs(encode(fresh, TEXTS) - trained).max() < 1e-5
    # the merged model
    merged = load_encoder(out, device="cpu")
    assert not lora.is_lora(merged.model) and merged.pooling == "last"
    assert np.abs(encode(merged, TEXTS) - trained).max() < 1e-5
    # sentence-transformers reads the merged folder with last-token pooling (right padding)
    st = SentenceTransformer(str(out), device="cpu")
    assert np.abs(st.encode(TEXTS, convert_to_numpy=True) - trained).max() < 1e-4


def test_a_folder_without_adapter_is_one_line(tiny_llama_dir, tmp_path):
    with pytest.raises(TunerError, match="holds no LoRA adapter"):
        lora.load_adapter(load_encoder(tiny_llama_dir, device="cpu"), tmp_path)


def test_a_study_searches_rank_alpha_dropout_and_prompt():
    from tuner.study import parse_spec

    raw = {"task": "sts", "models": ["smollm2-135m"], "sampler": "tpe", "n_trials": 5,
           "data": {"train": ["stsb"]},
           "train": {"lora_targets": ["q_proj", "v_proj"]},
           "search": {"losses": "cosent", "lora_r": [0, 8, 16], "lora_alpha": [8.0, 32.0],
                      "lora_dropout": {"choices": [0.0, 0.1]},
                      "prompt": {"choices": ["none", 'This sentence : "{text}" means in one word:"']}}}
    spec = parse_spec(raw)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    seen_r, seen_prompt = set(), set()
    for _ in range(30):
        trial = study.ask()
        config = spec.suggest(trial)
        assert config.lora_r in (0, 8, 16) and 8 <= config.lora_alpha <= 32 and config.lora_dropout in (0.0, 0.1)
        assert config.lora_targets == ["q_proj", "v_proj"]
        seen_r.add(config.lora_r)
        seen_prompt.add(config.prompt)
        study.tell(trial, 0.0)
    assert seen_r == {0, 8, 16} and seen_prompt == {None, 'This sentence : "{text}" means in one word:"'}
    with pytest.raises(TunerError, match="search.prompt.*has no {text}"):
        parse_spec({**raw, "search": {"prompt": "means in one word"}})
    with pytest.raises(TunerError, match="search.lora_r"):
        parse_spec({**raw, "search": {"lora_r": [-1, 8]}})


def test_a_lora_run_through_the_engine_scores_and_saves_with_its_prompt(tiny_llama_dir, tiny_data_dir, tmp_path):
    """run_finetune (what a trial runs): the prompt is in training, in the dev/test scores and in the
    saved model; scoring the saved model again gives the run's own test score."""
    from tuner.engine._run import evaluate_model, run_finetune

    prompt = 'good story : "{text}" means'
    config = RunConfig(model=str(tiny_llama_dir), train=["stsb"], data_dir=str(tiny_data_dir), protocol="seed",
                       weights={"cosent": 1.0}, batch_size=8, max_steps=4, eval_every=2, max_seq_length=32,
                       lr=5e-3, prompt=prompt, lora_r=4, lora_targets=["q_proj", "v_proj"])
    seen: list = []
    outcome = run_finetune(config, output=tmp_path / "m", device="cpu", progress=False,
                           on_eval=lambda step, dev: seen.append(step))
    assert seen == [2]
    assert outcome.train.trainable_params == 2 * 4 * ((32 + 32) + (32 + 16))
    assert outcome.config.prompt == prompt and outcome.config.pooling == "last" and outcome.config.lora_r == 4
    record = json.loads((outcome.output / "tuner.json").read_text())
    assert record["prompt"] == prompt and record["config"]["lora_r"] == 4
    assert (outcome.output / "adapter" / "adapter_config.json").is_file()
    again = evaluate_model(str(outcome.output), "stsb", split="test", protocol="seed", data_dir=tiny_data_dir,
                           max_seq_length=32, device="cpu")
    assert again["score"].iloc[0] == pytest.approx(outcome.scores["test"]["stsb"], abs=1e-6)
    bare = evaluate_model(load_encoder(outcome.output, device="cpu", prompt=""), "stsb", split="test",
                          protocol="seed", data_dir=tiny_data_dir, max_seq_length=32)
    assert bare["score"].iloc[0] != pytest.approx(outcome.scores["test"]["stsb"], abs=1e-6)


def test_gradient_checkpointing_recomputes_and_trains_the_same(tiny_llama_dir):
    def run(checkpointing: bool):
        encoder = load_encoder(tiny_llama_dir, device="cpu")
        calls = []
        mlp = encoder.model.layers[0].mlp  # counted by its forward: module hooks do not run in the recompute
        forward = mlp.forward

        def counted(*args, **kwargs):
            calls.append(1)
            return forward(*args, **kwargs)

        mlp.forward = counted
        result = finetune(encoder, _pairs(), CONFIG.replace(max_steps=3, gradient_checkpointing=checkpointing),
                          progress=False)
        return result.losses, len(calls), encode(encoder, TEXTS)

    plain_losses, plain_calls, plain = run(False)
    ckpt_losses, ckpt_calls, ckpt = run(True)
    assert plain_calls == 3 and ckpt_calls == 2 * 3  # each step's layer forward runs again in backward
    assert ckpt_losses == pytest.approx(plain_losses, abs=1e-5)
    assert np.abs(ckpt - plain).max() < 1e-5
    assert RunConfig().gradient_checkpointing is False


def test_a_trained_and_saved_lora_encoder_is_freed_by_reference_count(tiny_llama_dir, tmp_path):
    """A worker runs trial after trial: nothing (optimizer, peft wrapper, merged copy) may keep the
    last trial's weights alive until a full garbage collection."""
    import gc
    import weakref

    encoder = load_encoder(tiny_llama_dir, device="cpu")
    finetune(encoder, _pairs(), CONFIG.replace(max_steps=2), progress=False)
    save_encoder(encoder, tmp_path / "saved", {"max_seq_length": 32})
    weight = weakref.ref(next(encoder.model.get_base_model().parameters()))
    adapter = weakref.ref(next(p for n, p in encoder.named_parameters() if "lora_A" in n))
    gc.disable()
    try:
        del encoder
        assert weight() is None and adapter() is None
    finally:
        gc.enable()


@pytest.mark.slow
def test_a_grid_of_the_four_losses_on_a_lora_decoder_runs_and_exports(tmp_path, tiny_llama_dir, tiny_data_dir):
    """The study machinery is model-agnostic: a decoder with LoRA and a prompt in [train] goes through
    the grid workers, the trial records and the export like an encoder."""
    import tuner
    from _tiny import unique

    prompt = 'good story : "{text}" means'
    spec = tuner.parse_spec({
        "name": unique("lora-grid"), "task": "sts", "models": [str(tiny_llama_dir)], "data_dir": str(tiny_data_dir),
        "sampler": "grid", "protocol": "seed", "data": {"datasets": ["stsb"]}, "budget": {"max_steps": 2},
        "train": {"batch_size": 8, "max_seq_length": 16, "lr": 1e-3, "prompt": prompt, "lora_r": 4},
        "grid": {"losses": ["cos_mse", "cosent", "ibn", "angle"]},
    })
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = tuner.optimize(spec, storage=url, workers=1, artifacts=False, quiet=True)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == len(study.trials) >= 4
    trained = [t for t in done if t.user_attrs["config"].get("lora_r") == 4]
    assert sorted(t.user_attrs["loss"] for t in trained) == ["angle", "cos_mse", "cosent", "ibn"]
    assert all(t.user_attrs["config"]["prompt"] == prompt and t.user_attrs["config"]["pooling"] == "last"
               for t in trained)
    assert all(np.isfinite(t.user_attrs["scores.test.stsb"]) for t in done)
    result = tuner.export(study, tmp_path / "export", storage=url)
    assert result.filled >= 4
