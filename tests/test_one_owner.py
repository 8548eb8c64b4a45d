"""One owner per rule (issue #22, item 4): each rule is written once, and everyone else asks its owner.

* default temperatures: the loss registry (``LossSpec.default_tau``) -- not the loss functions'
  signatures, not the study files;
* "this loss takes no temperature": :func:`tuner.losses.registry.check_takes_tau`;
* LoRA (alpha defaults to the rank, the value checks): :mod:`tuner.models._lora`;
* the prompt slot and its check: :mod:`tuner.models._decoder`;
* pooling names, check and fallback: :mod:`tuner.models._pooling`;
* ``tuner.losses`` and ``tuner.models`` sit below ``tuner.config`` and import nothing from it.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from tuner.config import PROMPT_SLOT, ConfigError, RunConfig, check_prompt, section_fields
from tuner.errors import TunerError
from tuner.losses import angle_loss, cosent_loss, in_batch_negatives_loss
from tuner.losses.combined import CombinedLoss
from tuner.losses.in_batch_negatives import hard_negatives_loss
from tuner.losses.registry import (LOSSES, LossSpec, check_takes_tau, default_taus, parse_loss_values,
                                   register_loss, unregister_loss)
from tuner.models import _decoder, _pooling
from tuner.models._lora import LORA_FIELDS, LoraSettings, check_lora_value
from tuner.study import list_study_files, load_spec, parse_spec
from tuner.study.spec import compat_of

REPO = Path(__file__).resolve().parents[1]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), torch.tensor([0.9, 0.1, 0.5, 0.7, 0.0, 1.0])


# ---------------------------------------------------------------- temperatures: the registry's


@pytest.mark.parametrize("name", [n for n, spec in LOSSES.items() if spec.has_tau])
def test_no_loss_function_writes_a_default_temperature(name):
    spec = LOSSES[name]
    functions = [spec.load()] + ([spec.load(triplet=True)] if spec.triplet else [])
    for fn in functions:
        assert inspect.signature(fn).parameters["tau"].default is None, fn.__qualname__


def test_a_changed_registry_default_changes_every_user(monkeypatch):
    a, b, labels = _batch()
    before = float(angle_loss(a, b, labels))
    assert before == pytest.approx(float(angle_loss(a, b, labels, tau=LOSSES["angle"].default_tau)))
    monkeypatch.setitem(LOSSES, "angle", dataclasses.replace(LOSSES["angle"], default_tau=3.0))
    monkeypatch.setitem(LOSSES, "ibn", dataclasses.replace(LOSSES["ibn"], default_tau=7.0))

    loss = CombinedLoss({"angle": 1.0, "ibn": 1.0})
    assert loss.taus["angle"] == 3.0 and loss.taus["ibn"] == 7.0
    assert RunConfig().taus["angle"] == 3.0
    assert float(angle_loss(a, b, labels)) == pytest.approx(float(angle_loss(a, b, labels, tau=3.0)))
    assert float(angle_loss(a, b, labels)) != pytest.approx(before)
    total, parts = loss(torch.stack([a, b], dim=1).reshape(-1, 8), labels)
    assert parts["angle"] == pytest.approx(float(angle_loss(a, b, labels, tau=3.0)), abs=1e-6)
    assert parts["ibn"] == pytest.approx(float(in_batch_negatives_loss(a, b, labels, tau=7.0)), abs=1e-6)
    assert float(in_batch_negatives_loss(a, b, labels)) == pytest.approx(parts["ibn"], abs=1e-6)
    assert float(hard_negatives_loss(a, b, a[:2])) == pytest.approx(float(hard_negatives_loss(a, b, a[:2], tau=7.0)))
    # the shipped grid studies no longer pin the temperatures: they follow the registry too
    assert load_spec("sts-grid").base.taus == {"cosent": 20.0, "ibn": 7.0, "angle": 3.0}


def test_default_temperatures_are_used_when_none_is_given():
    a, b, labels = _batch(1)
    for name, fn in (("cosent", cosent_loss), ("angle", angle_loss), ("ibn", in_batch_negatives_loss)):
        assert float(fn(a, b, labels)) == pytest.approx(float(fn(a, b, labels, tau=LOSSES[name].default_tau)))
    assert CombinedLoss({"cosent": 1.0}).taus == default_taus()


# ---------------------------------------------------------------- "takes no temperature": one check


def test_one_no_temperature_message_everywhere():
    with pytest.raises(ValueError) as owner:
        check_takes_tau("cos_mse")
    message = str(owner.value)
    assert message == "cos_mse takes no temperature; only cosent, ibn, angle do"
    with pytest.raises(ValueError, match=f"^--taus: {message}$"):
        parse_loss_values("cos_mse=2", "--taus", taus=True)
    with pytest.raises(ConfigError) as config:
        RunConfig(taus={"cos_mse": 1.0})
    assert (config.value.key, config.value.problem) == ("taus", message)
    with pytest.raises(TunerError, match=f"^loss taus: {message}$"):
        CombinedLoss({"cosent": 1.0}, {"cos_mse": 1.0})
    sources = [p for p in (REPO / "tuner").rglob("*.py") if "takes no temperature" in p.read_text()]
    assert [p.relative_to(REPO).as_posix() for p in sources] == ["tuner/losses/registry.py"]


def test_a_plugin_loss_with_a_temperature_is_named_in_the_message():
    register_loss(LossSpec("owner_toy", "Owner toy", "OT", "tuner.losses.angle:angle_loss", default_tau=2.0))
    try:
        with pytest.raises(ConfigError, match="only cosent, ibn, angle, owner_toy do"):
            RunConfig(taus={"cos_mse": 1.0})
        assert RunConfig().taus["owner_toy"] == 2.0
    finally:
        unregister_loss("owner_toy")


# ---------------------------------------------------------------- LoRA: tuner.models._lora


def test_lora_alpha_defaults_to_the_rank_in_one_place():
    assert LoraSettings(8).alpha == 8 and LoraSettings(8, 32.0).alpha == 32.0
    assert LoraSettings(0).alpha == 0 and LoraSettings(16, None, 0.1, ("q_proj",)).targets == ("q_proj",)
    config = RunConfig(lora_r=8, lora_targets="q_proj, v_proj")
    assert config.lora_alpha is None  # the record keeps "unset"; the settings resolve it
    assert config.lora == LoraSettings(8, 8, 0.0, ("q_proj", "v_proj"))
    assert RunConfig(lora_r=4, lora_alpha=16).lora.alpha == 16.0
    for path in (REPO / "tuner").rglob("*.py"):
        assert "lora_alpha or" not in path.read_text(), path


@pytest.mark.parametrize("field,value,problem", [
    ("lora_r", -2, "is -2; use 0 (full fine-tuning) or a rank such as 8 or 16"),
    ("lora_alpha", 0, "is 0; use a positive number (scale = alpha / rank)"),
    ("lora_dropout", 1.0, "is 1; use a value in [0, 1)"),
    ("lora_targets", [1], "must be a list of module names such as q_proj,v_proj, got [1]"),
])
def test_lora_values_have_one_check(field, value, problem):
    with pytest.raises(ConfigError) as owner:
        check_lora_value(field, value)
    assert (owner.value.key, owner.value.problem) == (field, problem)
    with pytest.raises(ConfigError) as config:
        RunConfig(**{field: value})
    assert str(config.value) == str(owner.value)
    settings = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "lora_targets": "targets"}
    with pytest.raises(ConfigError, match="^" + field):
        LoraSettings(**{"r": 8, settings[field]: value})
    if field != "lora_targets":  # the study files' [search] uses the same check
        raw = {"task": "sts", "models": ["m"], "sampler": "tpe", "n_trials": 2, "data": {"train": ["stsb"]},
               "search": {"losses": "cosent", field: [value, 0.5] if field == "lora_dropout" else [value, 8]}}
        with pytest.raises(TunerError, match=rf"key 'search.{field}\[0\]': " + problem.replace("[", r"\[")
                           .replace("(", r"\(").replace(")", r"\)")):
            parse_spec(raw)


def test_lora_fields_are_run_config_fields():
    assert set(LORA_FIELDS) <= set(section_fields("train"))


# ---------------------------------------------------------------- prompt: tuner.models._decoder


def test_prompt_rule_lives_with_the_decoder():
    assert PROMPT_SLOT is _decoder.PROMPT_SLOT and check_prompt is _decoder.check_prompt
    assert _decoder.PROMPTEOL.count(PROMPT_SLOT) == 1
    with pytest.raises(ConfigError, match=r"^prompt: 'x' has no \{text\}"):
        check_prompt("x")
    with pytest.raises(ConfigError, match=r"^prompt: 'x' has no \{text\}"):
        RunConfig(prompt="x")


# ---------------------------------------------------------------- pooling: tuner.models._pooling


def test_pooling_names_check_and_fallback_have_one_owner():
    field = next(f for f in dataclasses.fields(RunConfig) if f.name == "pooling")
    assert field.metadata["help"].startswith(", ".join(_pooling.POOLING_NAMES) + " or a token index")
    assert (_pooling.fallback_pooling(False), _pooling.fallback_pooling(True)) == ("cls", "last")
    with pytest.raises(ConfigError, match="unknown pooling 'median'"):
        RunConfig(pooling="median")
    raw = {"task": "sts", "models": ["m"], "sampler": "tpe", "n_trials": 2, "data": {"train": ["stsb"]},
           "search": {"losses": "any", "pooling": []}}
    with pytest.raises(TunerError, match=", ".join(_pooling.POOLING_NAMES)):
        parse_spec(raw)


# ---------------------------------------------------------------- layers: config above models and losses


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names (module level, in functions, under TYPE_CHECKING)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("room", ["losses", "models"])
def test_losses_and_models_import_nothing_from_config(room):
    offenders = {path.relative_to(REPO).as_posix(): sorted(m for m in _imported_modules(path)
                                                           if m == "tuner.config" or m.startswith("tuner.config."))
                 for path in sorted((REPO / "tuner" / room).rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}


def test_config_stays_torch_free():
    out = subprocess.run([sys.executable, "-c", "import sys, tuner.config; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- the shipped studies restate no default


def _explicit_defaults(raw: dict) -> dict:
    """``raw`` with every [train]/[budget] setting it leaves out written as RunConfig's default."""
    default = RunConfig().to_dict()
    out = {**raw}
    for section in ("train", "budget"):
        table = dict(raw.get(section, {}))
        for name in section_fields(section):
            if name not in table and default[name] is not None:  # TOML cannot write None
                table[name] = default[name]
        out[section] = table
    return out


def _meaning(spec) -> dict:
    return {"base": spec.base.to_dict(), "cells": spec.cells(), "search": repr(spec.search),
            "sampler": (spec.sampler, spec.sampler_options), "pruner": spec.pruner, "models": spec.models,
            "data": (spec.train_datasets, spec.eval_datasets, spec.grid_datasets, spec.transfer_eval),
            "grid": (spec.losses, spec.grid_pooling), "n": (spec.n_trials, spec.repeats, spec.seed)}


@pytest.mark.parametrize("path", sorted(list_study_files()), ids=lambda p: p.stem)
def test_a_shipped_study_means_what_its_explicit_defaults_version_means(path):
    raw = tomllib.loads(path.read_text())
    explicit = _explicit_defaults(raw)
    assert _meaning(parse_spec(explicit, path)) == _meaning(parse_spec(raw, path))
    assert compat_of(explicit) == compat_of(raw)  # a study made from either file resumes from the other
    default = RunConfig()
    for section in ("train", "budget"):
        for key, value in raw.get(section, {}).items():
            if key != "seed":
                assert getattr(default.replace(**{key: value}), key) != getattr(default, key), \
                    f"{path.name}: [{section}] {key} restates the default; remove it"
