"""tuner.losses.registry: the one list of losses, and everything derived from it."""
from __future__ import annotations

import pytest
import torch

from tuner.config import RunConfig
from tuner.losses import CombinedLoss
from tuner.losses.registry import (LOSSES, SEED_ROWS, LossSpec, all_combinations, canonical_loss, canonical_row,
                                   combo_key, default_taus, param_loss, parse_combo, parse_loss_values,
                                   register_loss, row_of_weights, row_sort_key, row_style, row_title,
                                   unregister_loss, weights_of_row)


def test_builtin_losses_and_seed_rows():
    assert list(LOSSES) == ["cos_mse", "cosent", "ibn", "angle"]
    assert default_taus() == {"cosent": 20.0, "ibn": 20.0, "angle": 1.0}
    assert SEED_ROWS == ("zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle",
                         "ibn+angle", "cosent+ibn+angle")
    assert [row_title(r) for r in SEED_ROWS] == [
        "Without Fine-Tuning", "Default Cosine Similarity", "CoSENT", "In-Batch Negatives", "Angle",
        "CoSENT+IBN", "CoSENT+Angle", "IBN+Angle", "CoSENT+IBN+Angle"]


@pytest.mark.parametrize("text,name", [("CoSENT", "cosent"), ("in_batch_negatives", "ibn"), ("IBN", "ibn"),
                                       ("In-Batch Negatives", "ibn"), ("cosine_mse", "cos_mse"),
                                       ("Default Cosine Similarity", "cos_mse"), ("AnglE", "angle")])
def test_aliases_and_titles_resolve(text, name):
    assert canonical_loss(text) == name


def test_unknown_loss_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown loss 'focal'; use one of cos_mse, cosent, ibn, angle"):
        canonical_loss("focal")


def test_combinations_are_written_in_registry_order():
    assert combo_key(["angle", "CoSENT"]) == "cosent+angle"
    assert parse_combo("IBN+cos_mse") == ("cos_mse", "ibn")
    assert canonical_row("CoSENT+IBN+Angle") == "cosent+ibn+angle"
    assert canonical_row("Without Fine-Tuning") == "zero_shot"
    with pytest.raises(ValueError, match="names a loss twice"):
        parse_combo("cosent+CoSENT")
    assert row_of_weights({"cosent": 0.0, "ibn": 0.0}) == "cos_mse"  # the seed's fallback
    assert row_of_weights({"cos_mse": 0.3, "cosent": 0.9}) == "cos_mse+cosent"  # cos_mse counts when on
    assert weights_of_row("ibn+angle") == {"cos_mse": 0.0, "cosent": 0.0, "ibn": 1.0, "angle": 1.0}


def test_fifteen_combinations_seed_rows_first_then_by_size():
    rows = all_combinations()
    assert len(rows) == 15 and len(set(rows)) == 15
    assert rows[:8] == list(SEED_ROWS[1:])
    assert rows[8:] == ["cos_mse+cosent", "cos_mse+ibn", "cos_mse+angle", "cos_mse+cosent+ibn",
                        "cos_mse+cosent+angle", "cos_mse+ibn+angle", "cos_mse+cosent+ibn+angle"]
    assert sorted(reversed(rows), key=row_sort_key) == rows
    styles = {row_style(r) for r in ["zero_shot", *rows]}
    assert len(styles) == 16  # every row its own colour and marker


def test_param_names_decode_through_the_registry():
    assert param_loss("tau_cosent") == ("tau", "cosent")
    assert param_loss("use_cos_mse") == ("use", "cos_mse")
    assert param_loss("w_ibn") == ("w", "ibn")
    assert param_loss("lr") is None and param_loss("tau_cos_mse") == ("tau", "cos_mse")


def test_parse_loss_values():
    assert parse_loss_values("CoSENT=1, ibn=0.5") == {"cosent": 1.0, "ibn": 0.5}
    with pytest.raises(ValueError, match="is not NAME=VALUE"):
        parse_loss_values("cosent")
    with pytest.raises(ValueError, match="cos_mse takes no temperature"):
        parse_loss_values("cos_mse=3", "--taus", taus=True)


def _toy_loss(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    return (tau * (1 - torch.nn.functional.cosine_similarity(a, b))).mean()


def test_a_registered_loss_is_usable_everywhere_by_name():
    register_loss(LossSpec("toy", "Toy", "Toy", f"{__name__}:_toy_loss", default_tau=2.0, aliases=("toy_loss",)))
    try:
        assert default_taus()["toy"] == 2.0
        config = RunConfig(weights={"toy_loss": 1, "cosent": 1}, taus={"toy": 3.0})
        assert config.loss == "cosent+toy" and config.taus["toy"] == 3.0
        assert "--weights" in config.to_argv() and "toy=1" in " ".join(config.to_argv())
        loss = CombinedLoss.from_config(config)
        emb = torch.randn(8, 4, requires_grad=True)
        total, parts = loss(emb, torch.rand(4))
        assert set(parts) == {"cosent", "toy"}
        total.backward()
        assert emb.grad is not None
        assert len(all_combinations()) == 31
        assert row_title("cosent+toy") == "CoSENT+Toy"
    finally:
        unregister_loss("toy")
    assert "toy" not in LOSSES and len(all_combinations()) == 15


def test_registering_a_clashing_alias_fails():
    with pytest.raises(ValueError, match="already used by 'cosent'"):
        register_loss(LossSpec("cosent2", "CoSENT 2", "C2", f"{__name__}:_toy_loss", aliases=("cosent",)))
    assert "cosent2" not in LOSSES
