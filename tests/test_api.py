"""tuner.api: the core the CLI is a layer over (finetune settings -> RunConfig, DataFrames,
config files, status, optimize), on the tiny random-init BERT and tiny data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tuner
from _tiny import unique, write_grid_study
from conftest import tiny_sentences
from tuner import api
from tuner.config import RunConfig, field_names
from tuner.errors import TunerError


def sts_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"sentence1": tiny_sentences(n, seed), "sentence2": tiny_sentences(n, seed + 1),
                         "score": np.linspace(0, 5, n)})


def test_public_names_resolve():
    import tuner.service._orchestrate  # noqa: F401 - core modules must not shadow the API's names
    import tuner.service._status  # noqa: F401

    for name in ("evaluate", "finetune", "optimize", "status", "export", "plot_matrix"):
        assert getattr(tuner, name) is getattr(api, name)


def test_importing_the_api_loads_no_engine_and_no_cli():
    code = ("import sys, tuner.api; bad = [m for m in ('tuner.engine._run', 'tuner.cli', 'tuner.commands', 'optuna', "
            "'transformers') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- settings -> RunConfig


def test_run_config_settings_are_run_config_fields():
    config = api.run_config("m", "stsb,sickr", weights={"CoSENT": 1, "in_batch_negatives": 0.5}, taus={"ibn": 9},
                            pooling="avg", lr=3e-5, max_steps=5, data_dir=Path("/d"))
    assert config == RunConfig(model="m", train=["stsb", "sickr"], weights={"cosent": 1.0, "ibn": 0.5},
                               taus={"ibn": 9.0}, pooling="avg", lr=3e-5, max_steps=5, data_dir="/d")
    assert config.loss == "cosent+ibn"


def test_run_config_starts_from_a_config_and_arguments_override_it():
    base = RunConfig(model="base", weights={"angle": 1}, taus={"cosent": 5.0, "angle": 2.0}, seed=3, lr=1e-4)
    config = api.run_config(taus={"angle": 0.5}, seed=44, config=base)
    assert config == base.replace(taus={**base.taus, "angle": 0.5}, seed=44)  # taus merge, the rest is kept
    assert api.run_config(weights={"cosent": 1}, config=base.to_dict()).weights == \
        {"cos_mse": 0.0, "cosent": 1.0, "ibn": 0.0, "angle": 0.0}  # weights replace: missing = off


def test_unknown_setting_is_one_line_listing_valid_names():
    with pytest.raises(TunerError) as exc:
        api.run_config(learning_rate=1e-3, epoch=2)
    text = str(exc.value)
    assert "\n" not in text and "unknown setting(s) epoch, learning_rate" in text
    for name in ("lr", "epochs", "max_steps", "pooling", "protocol", "seed"):
        assert name in text
    assert set(text.split("use any of ")[1].split(", ")) == set(field_names()) - set(api._EXPLICIT)


def test_bad_setting_value_names_the_key():
    with pytest.raises(TunerError, match="batch_size"):
        api.run_config(batch_size=1)
    with pytest.raises(TunerError, match="config must be a RunConfig"):
        api.run_config(config="best_finetune.json")


def test_dataframes_are_recorded_as_a_placeholder(tiny_data_dir):
    from tuner.data import load_dataset

    df = sts_frame()
    assert api.run_config(train=df).train == [api.DATAFRAME_PLACEHOLDER]
    builtin = load_dataset("stsb", data_dir=tiny_data_dir)
    config = api.run_config(train=[df, "sickr"], eval=[builtin, Path("x.csv")])
    assert config.train == [api.DATAFRAME_PLACEHOLDER, "sickr"] and config.eval == [builtin.name, "x.csv"]


# ---- finetune


def test_finetune_dataframe_overrides_and_settings(tiny_model_dir, tmp_path):
    train, held_out = sts_frame(40, 0), sts_frame(40, 5)
    run = tuner.finetune(str(tiny_model_dir), train=train, eval=held_out, weights={"cosent": 1}, pooling="cls",
                         max_steps=2, batch_size=8, max_seq_length=16, device="cpu", progress=False,
                         output=tmp_path / "m")
    assert run.train.steps == 2 and set(run.scores) == {"dev", "test"}
    assert list(run.scores["test"]) == ["dataframe"]
    assert run.config.train == [api.DATAFRAME_PLACEHOLDER] and run.config.eval == [api.DATAFRAME_PLACEHOLDER]
    assert run.config.loss == "cosent" and run.config.task == "sts" and run.config.max_steps == 2
    saved = json.loads((tmp_path / "m" / "tuner.json").read_text())
    assert saved["config"] == run.config.to_dict()


def test_finetune_from_config_with_a_loaded_encoder(tiny_model_dir, tiny_data_dir):
    from tuner.models._encoder import load_encoder

    encoder = load_encoder(str(tiny_model_dir), pooling="avg", device="cpu")
    base = RunConfig(train=["stsb"], data_dir=str(tiny_data_dir), max_steps=1, batch_size=8, max_seq_length=16,
                     weights={"angle": 1})
    run = tuner.finetune(encoder, config=base, eval="sts12", progress=False)
    assert run.config.model == encoder.name and run.config.eval == ["sts12"] and run.config.pooling == "avg"
    assert set(run.scores["test"]) == {"sts12"} and run.config.loss == "angle"


# ---- config files


def test_load_run_config_reads_records_and_plain_dicts(tmp_path):
    config = RunConfig(weights={"ibn": 1}, lr=1e-4)
    (tmp_path / "record.json").write_text(json.dumps({"trial": 1, "config": config.to_dict()}))
    (tmp_path / "plain.json").write_text(json.dumps({**config.to_dict(), "written_by": "a newer tuner"}))
    assert api.load_run_config(tmp_path / "record.json") == config
    assert api.load_run_config(tmp_path / "plain.json") == config


# ---- studies


def test_status_of_a_prepared_grid_study(tmp_path, tiny_model_dir, tiny_data_dir):
    from tuner.service._study_service import StudyService
    from tuner.storage import open_storage
    from tuner.study import load_spec

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    name = unique("api-status")
    path = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                            datasets=("stsb",))
    with pytest.raises(TunerError, match="does not exist"):
        tuner.status(path, storage=url)
    handle = open_storage(url, heartbeat_interval=1, grace_period=3)
    try:
        StudyService(load_spec(path), handle).prepare()
    finally:
        handle.close()
    st = tuner.status(str(path), storage=url)
    assert st["study"] == name and st["counts"]["WAITING"] == 2 and st["grid"]["cells"] == 2
    assert st["best"] is None and st["progress"]["target"] == 2


@pytest.mark.slow
def test_optimize_a_spec_built_in_python_then_status_and_export(tmp_path, tiny_model_dir, tiny_data_dir):
    """A StudySpec without a file runs through worker processes (written to a temporary file for
    them) and returns the optuna.Study; a second call resumes (nothing to do)."""
    spec = tuner.parse_spec({
        "name": unique("api-opt"), "task": "sts", "models": [str(tiny_model_dir)], "data_dir": str(tiny_data_dir),
        "sampler": "grid", "protocol": "seed", "data": {"datasets": ["stsb"]}, "budget": {"max_steps": 1},
        "train": {"batch_size": 8, "max_seq_length": 16, "pooling": "cls"}, "grid": {"losses": ["cosent"]},
    })
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = tuner.optimize(spec, storage=url, workers=1, artifacts=False, quiet=True)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert tuner.optimize(spec, storage=url, quiet=True).study_name == spec.name
    st = tuner.status(spec, storage=url)
    assert st["grid"]["coverage"] == 1.0 and st["best"]["number"] == 0
    result = tuner.export(study, tmp_path / "export", storage=url)
    assert result.filled >= 1
