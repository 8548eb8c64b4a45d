"""tuner.config.RunConfig: one validated description of a run, its JSON, argv and CLI flags."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from tuner.config import ConfigError, RunConfig, add_arguments, field_names, from_arguments, section_fields


def test_defaults_are_the_seed_recipe_and_valid():
    config = RunConfig()
    assert config.model == "all-MiniLM-L6-v2" and config.train == ["stsb"] and config.eval_sets == ["stsb"]
    assert config.weights == {"cos_mse": 0.0, "cosent": 0.0, "ibn": 0.0, "angle": 0.0}
    assert config.loss == "cos_mse" and config.active_weights == {"cos_mse": 1.0}
    assert config.taus == {"cosent": 20.0, "ibn": 20.0, "angle": 1.0}
    assert (config.lr, config.batch_size, config.epochs, config.seed) == (2e-5, 32, 1, 42)


def test_aliases_normalise_and_labels_include_cos_mse():
    config = RunConfig(weights={"CoSENT": 1, "cosine_mse": 0.25}, pooling="mean", train="stsb,sickr")
    assert config.weights["cosent"] == 1.0 and config.weights["cos_mse"] == 0.25
    assert config.loss == "cos_mse+cosent" and config.losses == ("cos_mse", "cosent")
    assert config.pooling == "avg" and config.train == ["stsb", "sickr"]


@pytest.mark.parametrize("changes,message", [
    ({"lr": -1.0}, "lr is -1.0; use a positive learning rate"),
    ({"batch_size": 1}, "batch_size is 1; use 2 or more"),
    ({"batch_size": "32"}, "batch_size: must be an integer"),
    ({"weights": {"cosent": -0.5}}, "weights: cosent is -0.5"),
    ({"weights": {"focal": 1}}, "weights: unknown loss 'focal'"),
    ({"taus": {"cos_mse": 1.0}}, "taus: cos_mse takes no temperature"),
    ({"taus": {"angle": 0}}, "taus: angle is 0"),
    ({"protocol": "random"}, "protocol: 'random' is unknown"),
    ({"pooling": "median"}, "pooling: unknown pooling"),
    ({"train": []}, "train is empty"),
    ({"max_eval_examples": 5}, "max_eval_examples is 5; use 10 or more"),
    ({"precision": "fp8"}, "precision: 'fp8' is unknown"),
    ({"warmup_ratio": float("nan")}, "warmup_ratio is nan; use a finite number"),
])
def test_validation_names_the_key_in_one_line(changes, message):
    with pytest.raises(ConfigError) as info:
        RunConfig(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.key.split(".")[0] in field_names()


def test_json_round_trip_and_unknown_keys():
    config = RunConfig(weights={"cosent": 1, "angle": 0.5}, taus={"cosent": 7.5}, pooling=3, max_steps=10,
                       eval=["sickr"], length_grouping=False)
    text = json.dumps(config.to_dict(), allow_nan=False)
    assert RunConfig.from_dict(json.loads(text)) == config
    with pytest.raises(ConfigError, match="colour: unknown run setting"):
        RunConfig.from_dict({**config.to_dict(), "colour": "blue"})
    assert RunConfig.from_dict({**config.to_dict(), "colour": "blue"}, strict=False) == config
    with pytest.raises(ConfigError, match="unknown run setting"):
        config.replace(learning_rate=1e-3)


def _parse(argv: list[str]) -> RunConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(argv))


def test_argv_round_trip_and_defaults_untouched():
    config = RunConfig(model="./m", train=["stsb", "sickr"], weights={"cosent": 1, "ibn": 0.25},
                       taus={"ibn": 10.0}, pooling="cls_avg", lr=3e-5, max_train_examples=100,
                       length_grouping=False, seed=7)
    argv = config.to_argv()
    assert _parse(argv) == config
    assert _parse([]) == RunConfig()
    assert "--seed" not in RunConfig().to_argv()
    assert config.command().startswith("python -m tuner finetune --model ./m --train stsb,sickr")


def test_every_field_is_a_flag_with_help_and_default():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    for f in dataclasses.fields(RunConfig):
        assert "--" + f.name.replace("_", "-") in text
    assert "(default: 2e-05)" in text or "(default: 2e-5)" in text


def test_bad_flag_values_name_the_flag():
    with pytest.raises(ConfigError, match="--lr 'fast' is not a number"):
        _parse(["--lr", "fast"])
    with pytest.raises(ConfigError, match="--weights: unknown loss 'focal'"):
        _parse(["--weights", "focal=1"])


def test_study_sections_cover_train_and_budget_fields():
    assert {"lr", "batch_size", "taus", "pooling", "weights"} <= set(section_fields("train"))
    assert set(section_fields("budget")) == {"epochs", "max_steps", "max_train_examples", "max_eval_examples",
                                             "eval_every"}
