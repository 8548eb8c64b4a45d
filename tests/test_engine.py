"""Engine end to end on the tiny random-init BERT and tiny data; CLI exit codes and one-line errors."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_sentences
from tuner.cli import main
from tuner.engine import evaluate_model, prepare_data, run_finetune
from tuner.config import RunConfig


def test_evaluate_official_splits(tiny_model_dir, tiny_data_dir):
    table = evaluate_model(str(tiny_model_dir), ["stsb", "sts12", "mr"], data_dir=tiny_data_dir, device="cpu")
    assert list(table["dataset"]) == ["stsb", "sts12", "mr"]
    assert list(table["metric"]) == ["spearman", "spearman", "accuracy"]
    assert table.loc[2, "classification_protocol"] == "senteval"
    assert table["score"].between(-1, 1).all()
    assert list(table["n"]) == [48, 48, 48]


def test_evaluate_dataframe_and_protocol(tiny_model_dir):
    df = pd.DataFrame({"sentence1": tiny_sentences(40, 1), "sentence2": tiny_sentences(40, 2),
                       "score": np.linspace(0, 5, 40)})
    table = evaluate_model(str(tiny_model_dir), df, protocol="seed", split="test", device="cpu")
    assert table.loc[0, "n"] == 12  # 30% of 40
    assert table.loc[0, "protocol"] == "seed"


def test_run_finetune_scores_dev_and_test_and_saves(tiny_model_dir, tiny_data_dir, tmp_path):
    config = RunConfig(model=str(tiny_model_dir), train=["stsb"], eval=["stsb", "sts12"], data_dir=str(tiny_data_dir),
                       weights={"cosent": 1, "angle": 1}, batch_size=8, max_steps=3, lr=1e-3, eval_every=1)
    seen = []
    outcome = run_finetune(config, output=tmp_path / "m", device="cpu", on_eval=lambda s, v: seen.append((s, v)),
                           progress=False)
    assert set(outcome.scores) == {"dev", "test"}
    assert set(outcome.scores["dev"]) == {"stsb", "sts12"}
    assert outcome.dev_score == pytest.approx(np.mean(list(outcome.scores["dev"].values())))
    assert [s for s, _ in seen] == [1, 2]
    saved = json.loads((tmp_path / "m" / "tuner.json").read_text())
    assert saved["config"]["weights"] == {"cos_mse": 0, "cosent": 1, "ibn": 0, "angle": 1}
    assert saved["config"]["pooling"] == "cls"
    assert RunConfig.from_dict(saved["config"]) == outcome.config  # the record round-trips
    assert config.pooling is None  # the input config is not overwritten


def test_classification_pairs_duplicate_sentences(tiny_data_dir):
    data = prepare_data(RunConfig(train=["mr"], data_dir=str(tiny_data_dir), batch_size=4))
    assert data.task == "classification"
    assert data.train.text1 == data.train.text2
    assert set(np.unique(data.train.labels)) <= {0.0, 1.0}


def test_cli_evaluate_json(tiny_model_dir, tiny_data_dir, capsys):
    code = main(["evaluate", "--model", str(tiny_model_dir), "--datasets", "sts12", "--data-dir", str(tiny_data_dir),
                 "--device", "cpu", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["scores"]) == {"sts12"}


def test_cli_finetune(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    code = main(["finetune", "--model", str(tiny_model_dir), "--train", "stsb", "--eval", "stsb",
                 "--weights", "cosent=1,ibn=0,angle=1", "--taus", "cosent=20,ibn=20,angle=1", "--pooling", "cls",
                 "--max-steps", "2", "--batch-size", "8", "--data-dir", str(tiny_data_dir), "--device", "cpu",
                 "--output", str(tmp_path / "out"), "--no-progress", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["steps"] == 2 and "stsb" in payload["scores"]["test"]
    assert (tmp_path / "out" / "modules.json").is_file()


@pytest.mark.parametrize("argv, fragment", [
    (["evaluate", "--datasets", "stsx"], "unknown dataset 'stsx'"),
    (["finetune", "--train", "stsb", "--weights", "cosent=-1"], "cosent"),
    (["finetune", "--train", "stsb", "--weights", "foo=1"], "unknown loss 'foo'"),
    (["finetune", "--train", "stsb", "--taus", "cosent=0"], "tau"),
    (["finetune", "--train", "stsb", "--weights", "cosent"], "NAME=VALUE"),
    (["evaluate", "--datasets", "stsb", "--pooling", "median"], "unknown pooling"),
    (["evaluate", "--datasets", "stsb", "--model", "/nonexistent/model"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, fragment, tiny_model_dir, tiny_data_dir, capsys):
    if "--model" not in argv:
        argv = argv + ["--model", str(tiny_model_dir)]
    code = main(argv + ["--data-dir", str(tiny_data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert fragment in err


def test_cli_bad_data_file(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence1,sentence2,score\na b,c d,7\ne f,g h,2\n")
    code = main(["evaluate", "--model", str(tiny_model_dir), "--datasets", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "bad.csv" in err and "7" in err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "evaluate" in out and "finetune" in out


def test_run_finetune_classification_scores_dev_and_test(tiny_model_dir, tiny_data_dir):
    config = RunConfig(model=str(tiny_model_dir), train=["mr"], data_dir=str(tiny_data_dir), batch_size=8, max_steps=2)
    outcome = run_finetune(config, device="cpu", progress=False)
    assert outcome.metric == "accuracy"
    assert set(outcome.scores["dev"]) == {"mr"} and set(outcome.scores["test"]) == {"mr"}
    assert all(0.0 <= v <= 1.0 for split in outcome.scores.values() for v in split.values())
