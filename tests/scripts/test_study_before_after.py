"""scripts/study_before_after.py: the zero-shot row against the trial chosen on dev, from a study."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("study_before_after", REPO / "scripts" / "study_before_after.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_best_is_chosen_on_dev_and_compared_with_the_zero_shot_row(tmp_path):
    study = optuna.create_study(direction="maximize", study_name="s")
    for key, value in {"dev": 0.70, "test": 0.60}.items():
        study.set_user_attr(f"zero_shot.m.stsb.{key}", value)

    def add(dev, test, lora_r, prompt):
        config = {"weights": {"cos_mse": 0.0, "cosent": 0.5, "ibn": 0.2}, "taus": {"cosent": 20.0, "ibn": 10.0, "angle": 1.0},
                  "pooling": "last", "prompt": prompt, "lora_r": lora_r, "lora_alpha": None}
        study.add_trial(optuna.trial.create_trial(
            value=dev, params={"lora_r": lora_r}, distributions={"lora_r": optuna.distributions.CategoricalDistribution([8, 16])},
            user_attrs={"model": "m", "scores.dev.stsb": dev, "scores.test.stsb": test, "config": config,
                        "trainable_params": 1000 * lora_r, "train_pairs_per_s": 3.5}))

    add(0.80, 0.75, 8, None)
    add(0.82, 0.70, 16, 'A "{text}"')           # best on dev, worse on test: still the one chosen
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    module = _script()
    record = module.before_after(study)
    assert record["best_trial"] == 1 and record["trials"] == {"complete": 2, "pruned": 1, "failed": 0}
    assert record["scores"]["stsb"]["dev"] == {"zero_shot": 0.70, "best": 0.82, "gain": 0.82 - 0.70}
    assert abs(record["scores"]["stsb"]["test"]["gain"] - 0.10) < 1e-12
    table = module.markdown(record)
    assert "| stsb | dev | 70.00 | 82.00 | +12.00 |" in table and "| stsb | test | 60.00 | 70.00 | +10.00 |" in table
    assert "cosent 0.50 + ibn 0.20 (taus cosent 20, ibn 10)" in table and "16,000 trainable" in table
    assert 'prompt `A "{text}"`' in table and "LoRA r 16 (alpha 16)" in table
