"""``tuner finetune``: flags generated from RunConfig, ``--config FILE`` + overriding flags, output."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tuner.cli import build_parser, main
from tuner.config import RunConfig, from_arguments

REPO = Path(__file__).resolve().parents[2]
# an export written before RunConfig (flat keys, extra keys), kept as it was (docs/results is re-exported)
OLD_BEST = Path(__file__).resolve().parents[1] / "fixtures" / "best_finetune_before_runconfig.json"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(argv: list[str]) -> RunConfig:
    """The RunConfig the finetune command builds from ``argv`` (no --config)."""
    return from_arguments(build_parser().parse_args(["finetune", *argv]))


@pytest.fixture
def captured(monkeypatch):
    """Replace tuner.api.finetune (what the command calls) by a recorder; no training."""
    import tuner.api

    calls: list[dict] = []

    def fake(**kwargs):
        calls.append(kwargs)
        config = kwargs["config"].replace(pooling=kwargs["config"].pooling or "cls", task="sts")
        train = SimpleNamespace(steps=3, pairs_per_s=10.0, wall_s=0.3)
        return SimpleNamespace(config=config, metric="spearman", scores={"dev": {"stsb": 0.5}, "test": {"stsb": 0.4}},
                               dev_score=0.5, test_score=0.4, train=train, output=None)

    monkeypatch.setattr(tuner.api, "finetune", fake)
    return calls


def test_help_lists_every_run_config_field(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    cli_fields = [f for f in dataclasses.fields(RunConfig) if f.metadata.get("cli", True)]
    assert len(cli_fields) >= 20
    missing = [f.name for f in cli_fields if _flag(f.name) not in out]
    assert not missing, f"finetune --help lacks flags for {missing}"
    for extra in ("--config", "--output", "--device", "--no-progress", "--json"):
        assert extra in out
    assert "(default: 2e-05)" in out  # defaults come from the dataclass


def test_no_flags_is_the_default_config():
    assert _parse([]) == RunConfig()


@pytest.mark.parametrize("config", [
    RunConfig(),
    RunConfig(model="some/model", train=["stsb", "sickr"], eval=["sts12"], protocol="seed",
              weights={"cos_mse": 0.25, "cosent": 1.0, "angle": 0.5}, taus={"cosent": 7.5, "angle": 0.8},
              ibn_positive_threshold=0.8, pooling="avg", lr=3e-5, batch_size=16, max_seq_length=64, warmup_ratio=0.2,
              weight_decay=0.0, max_grad_norm=0.0, precision="fp32", length_grouping=False, epochs=2, max_steps=50,
              max_train_examples=1200, max_eval_examples=100, eval_every=10, seed=7, task="sts", data_dir="/data"),
    RunConfig(weights={"ibn": 0.123456789}, taus={"ibn": 12.3456789}, pooling=3, lr=8.589234048225686e-05),
], ids=["default", "every-field", "precise-floats"])
def test_config_round_trips_through_the_command_line(config):
    argv = config.to_argv()
    assert _parse(argv) == config, argv
    assert config.command().startswith("python -m tuner finetune")


def test_config_file_with_overriding_flags(tmp_path, captured, capsys):
    saved = RunConfig(model="base/model", train=["stsb"], weights={"cosent": 1.0, "angle": 1.0},
                      taus={"cosent": 5.0}, lr=5e-5, batch_size=16, seed=3)
    record = {"study": "s", "trial": 4, "config": saved.to_dict(), "scores": {"dev": {"stsb": 0.8}}}
    path = tmp_path / "best_finetune.json"
    path.write_text(json.dumps(record))

    code = main(["finetune", "--config", str(path), "--seed", "44", "--taus", "angle=2", "--no-length-grouping",
                 "--output", str(tmp_path / "out"), "--device", "cpu", "--no-progress", "--json"])
    assert code == 0
    call = captured[-1]
    expected = saved.replace(seed=44, taus={**saved.taus, "angle": 2.0}, length_grouping=False)
    assert call["config"] == expected
    assert call["output"] == str(tmp_path / "out") and call["device"] == "cpu" and call["progress"] is False
    payload = json.loads(capsys.readouterr().out)
    assert payload["config"] == {**expected.to_dict(), "pooling": "cls", "task": "sts"}
    assert payload["loss"] == "cosent+angle" and payload["steps"] == 3
    assert "--seed 44" in payload["command"] and "--output" in payload["command"]


def test_config_file_written_before_run_configs_loads(captured):
    """The best_finetune.json of an export written before RunConfig (flat keys, extra keys) still runs."""
    assert main(["finetune", "--config", str(OLD_BEST), "--max-steps", "2"]) == 0
    config = captured[-1]["config"]
    assert config.model == "all-MiniLM-L6-v2" and config.train == ["stsb"] and config.pooling == "avg"
    assert config.loss == "cos_mse+cosent+ibn+angle"
    assert config.weights["cos_mse"] == pytest.approx(0.2972232528466083)
    assert config.taus["ibn"] == pytest.approx(9.613487844740362)
    assert config.max_train_examples == 1200 and config.max_steps == 2


def test_text_output(captured, capsys):
    assert main(["finetune", "--weights", "cosent=1", "--max-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "test  stsb" in out and "spearman 40.00" in out and "loss cosent" in out


@pytest.mark.parametrize("argv, fragment", [
    (["--lr", "fast"], "error: --lr 'fast' is not a number"),
    (["--batch-size", "1"], "error: --batch-size is 1; use 2 or more"),
    (["--warmup-ratio", "1"], "error: --warmup-ratio is 1.0; use a value in [0, 1)"),
    (["--weights", "cosent=1,bogus=2"], "unknown loss 'bogus'"),
    (["--taus", "cos_mse=2"], "takes no temperature"),
    (["--protocol", "nope"], "protocol"),
    (["--config", "/nonexistent/best.json"], "cannot read run config"),
])
def test_bad_flags_are_one_line_exit_2(argv, fragment, captured, capsys):
    assert main(["finetune", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err, err
    assert not captured


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"config": {"weights": {"nope": 1}}}', "unknown loss"),
])
def test_bad_config_file_is_one_line_exit_2(text, fragment, tmp_path, captured, capsys):
    path = tmp_path / "c.json"
    path.write_text(text)
    assert main(["finetune", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err and str(path) in err, err


def test_finetune_tiny_model_json_records_full_config(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    """End to end on the tiny random-init BERT: the JSON holds the config as it ran, and the saved
    model's tuner.json is a valid --config for the next run."""
    argv = ["finetune", "--model", str(tiny_model_dir), "--train", "stsb", "--weights", "cosent=1,angle=1",
            "--pooling", "cls", "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "16",
            "--data-dir", str(tiny_data_dir), "--device", "cpu", "--no-progress", "--json",
            "--output", str(tmp_path / "m")]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["steps"] == 2 and set(payload["scores"]) == {"dev", "test"}
    ran = RunConfig.from_dict(payload["config"])
    assert ran.loss == "cosent+angle" and ran.task == "sts" and ran.max_seq_length == 16
    from tuner.api import load_run_config

    assert load_run_config(tmp_path / "m" / "tuner.json") == ran


def test_finetune_several_seeds_reports_each_and_their_interval(tiny_model_dir, tiny_data_dir, capsys):
    argv = ["finetune", "--model", str(tiny_model_dir), "--train", "stsb", "--weights", "cosent=1",
            "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "16", "--lr", "1e-3",
            "--data-dir", str(tiny_data_dir), "--device", "cpu", "--no-progress", "--json", "--seeds", "1,2,3"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert payload["seeds"] == [1, 2, 3] and set(payload["scores_by_seed"]) == {"1", "2", "3"}
    tests = [payload["scores_by_seed"][s]["test"]["stsb"] for s in ("1", "2", "3")]
    summary = payload["summary"]["test"]["stsb"]
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(sum(tests) / 3)
    assert summary["std"] == pytest.approx(float(np.std(tests, ddof=1)))
    if summary["std"] > 0:
        assert summary["ci_low"] < summary["mean"] < summary["ci_high"]


@pytest.mark.parametrize("seeds,fragment", [("a,b", "is not a comma-separated list"), ("1,1", "different seeds")])
def test_bad_seeds_are_one_line(seeds, fragment, capsys):
    assert main(["finetune", "--seeds", seeds]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err
