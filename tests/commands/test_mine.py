"""``python -m tuner mine`` (issue #24): triplets written and read back, the summary, the cache, every bad
input one line with exit 2 and nothing written; and mining as a study parameter (each setting mined once)."""
from __future__ import annotations

import pandas as pd
import pytest

from tuner.cli import main
from tuner.engine import _mining


@pytest.fixture
def pairs(tiny_data_dir, tmp_path):
    rows = pd.read_csv(tiny_data_dir / "sts" / "stsb" / "train.tsv", sep="\t")
    path = tmp_path / "qa.csv"
    pd.DataFrame({"question": rows["sentence1"], "answer": rows["sentence2"]}).head(30).to_csv(path, index=False)
    return path


def mine_args(model, pairs, out, *extra) -> list[str]:
    return ["mine", "--model", str(model), "--train", str(pairs), "--out", str(out), "--columns",
            "anchor=question,positive=answer", "--max-seq-length", "32", "--device", "cpu", *extra]


def test_mine_writes_triplets_that_train_and_a_summary(tiny_model_dir, pairs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "triplets.parquet"
    assert main(mine_args(tiny_model_dir, pairs, out, "--num-negatives", "2", "--range-max", "8")) == 0
    text = capsys.readouterr().out
    assert "pairs 30 (30 anchors), corpus 30 texts" in text and "cached:" in text and "negative: mean" in text
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["anchor", "positive", "negative", "negative_2"] and len(frame) == 30
    assert (frame["negative"] != frame["positive"]).all()
    calls: list = []
    real = _mining.encode
    monkeypatch.setattr(_mining, "encode", lambda *a, **k: calls.append(1) or real(*a, **k))
    jsonl = tmp_path / "t.jsonl"
    assert main(mine_args(tiny_model_dir, pairs, jsonl, "--num-negatives", "2", "--range-max", "8", "--json")) == 0
    assert calls == [] and '"from_cache": true' in capsys.readouterr().out  # the cache: nothing encoded
    pd.testing.assert_frame_equal(pd.read_json(jsonl, lines=True), frame)


@pytest.mark.parametrize("extra, fragment", [
    (["--range-min", "5", "--range-max", "3"], "--range-min is 5, not below range_max 3"),
    (["--num-negatives", "0"], "--num-negatives is 0; use 1 or more"),
    (["--num-negatives", "4", "--range-max", "3"], "hold only 3 candidates"),
    (["--min-score", "0.9", "--max-score", "0.1"], "--min-score is 0.9, above max_score"),
    (["--margin", "inf"], "--margin must be a finite number"),
    (["--sampling", "best"], "invalid choice: 'best'"),
    (["--range-max", "x"], "'x' is not an integer"),
])
def test_impossible_settings_are_one_line(extra, fragment, tiny_model_dir, pairs, tmp_path, capsys):
    out = tmp_path / "never.parquet"
    assert main(mine_args(tiny_model_dir, pairs, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("content, columns, fragment", [
    ("question,answer\n", "anchor=question,positive=answer", "no data rows"),
    ("", "anchor=question,positive=answer", "the file is empty"),
    ("q,a\nx,y\n", "anchor=question,positive=answer", "no column 'question'"),
    ("sentence1,sentence2,score\na,b,1\nc,d,2\n", None, "is sts data; mining reads unscored"),
    ("anchor,positive,negative\na,b,c\nd,e,f\n", None, "already holds negatives"),
])
def test_bad_files_are_one_line(content, columns, fragment, tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "in.csv"
    path.write_text(content)
    out = tmp_path / "never.parquet"
    argv = ["mine", "--model", str(tiny_model_dir), "--train", str(path), "--out", str(out)]
    assert main(argv + (["--columns", columns] if columns else [])) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and not out.exists()


def test_bad_output_paths_are_one_line(tiny_model_dir, pairs, tmp_path, capsys):
    assert main(mine_args(tiny_model_dir, pairs, tmp_path / "t.xlsx")) == 2
    assert "unsupported file type '.xlsx'" in capsys.readouterr().err
    assert main(mine_args(tiny_model_dir, pairs, tmp_path / "nope" / "t.csv")) == 2
    assert "does not exist" in capsys.readouterr().err


def write_mining_study(tmp_path, tiny_model_dir, tiny_data_dir, pairs) -> str:
    path = tmp_path / "mining.toml"
    path.write_text(f'''
name = "mining-tpe"
task = "sts"
models = ["{tiny_model_dir}"]
sampler = "tpe"
n_trials = 2
data_dir = "{tiny_data_dir}"
[data]
train = ["{pairs}"]
eval = ["stsb"]
[train]
batch_size = 8
max_seq_length = 16
pooling = "cls"
columns = {{ anchor = "question", positive = "answer" }}
[budget]
max_steps = 1
max_eval_examples = 20
[search]
losses = "ibn"
mine_num_negatives = {{ choices = [1, 2] }}
mine_range_max = {{ choices = [4] }}
''')
    return str(path)


def test_a_study_searches_mining_settings_and_mines_each_once(tiny_model_dir, tiny_data_dir, pairs, tmp_path,
                                                              monkeypatch):
    from tuner.service import run_worker
    from tuner.storage import open_storage

    monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "cache"))
    mined: list = []
    real = _mining._mine
    monkeypatch.setattr(_mining, "_mine", lambda *a, **k: mined.append(a[4]) or real(*a, **k))
    study = write_mining_study(tmp_path, tiny_model_dir, tiny_data_dir, pairs)
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    assert run_worker(study, url, device="cpu", artifacts=False) == 0
    import optuna

    handle = open_storage(url, heartbeat_interval=None, grace_period=None)
    try:
        trials = optuna.load_study(study_name="mining-tpe", storage=handle.storage).get_trials()
    finally:
        handle.close()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    drawn = {t.params["mine_num_negatives"] for t in trials}
    assert sorted(s.num_negatives for s in mined) == sorted(drawn)  # each distinct setting mined once
    assert len(list((tmp_path / "cache" / "mined").glob("*.parquet"))) == len(drawn)
    assert all(t.user_attrs["config"]["mine_num_negatives"] == t.params["mine_num_negatives"] for t in trials)
    for t in trials:  # the record says what was mined (docs/trial-record.md)
        assert t.user_attrs["mining"]["negatives_asked"] == t.params["mine_num_negatives"]
        assert len(t.user_attrs["mining"]["key"]) > 8


@pytest.mark.parametrize("search, fragment", [
    ('mine_range_min = [0, 5]\nmine_range_max = [3, 10]', "search.mine_range_min"),
    ('mine_num_negatives = [1, 6]\nmine_range_max = 4', "search.mine_num_negatives"),
    ('mine_margin = "big"', "search.mine_margin"),
])
def test_a_mining_search_that_some_draw_cannot_mine_is_refused_at_parse(search, fragment, tmp_path):
    from tuner.errors import TunerError
    from tuner.study import load_spec

    path = tmp_path / "bad.toml"
    path.write_text(f'task = "sts"\nmodels = ["m"]\nsampler = "tpe"\nn_trials = 2\n[data]\ntrain = ["stsb"]\n'
                    f'[search]\nlr = [1e-5, 1e-4]\n{search}\n')
    with pytest.raises(TunerError, match=fragment):
        load_spec(str(path))
