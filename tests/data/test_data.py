"""Tests for tuner.data: names, readers, validation errors, protocols/splits.

Fast tests use tiny DataFrames and tmp_path files. Tests marked ``real`` read the real
evaluation sets from ../shared/data (or $TUNER_DATA_DIR) and check the README's row counts.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from tuner.data import (
    CLASSIFICATION_DATASETS,
    HUB_IDS,
    PROTOCOLS,
    STS_DATASETS,
    Dataset,
    canonical_name,
    check_min_rows,
    load_dataset,
    protocol_splits,
    resolve_data_dir,
    subsample,
)
from tuner.data import readers as data_readers
from tuner.errors import TunerError

REPO_ROOT = Path(__file__).resolve().parents[2]


def real_data_dir() -> Path:
    env = os.environ.get("TUNER_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def no_autodetect(monkeypatch):
    """No TUNER_DATA_DIR and no auto-detection of shared/data."""
    monkeypatch.delenv("TUNER_DATA_DIR", raising=False)
    monkeypatch.setenv("TUNER_NO_AUTODETECT", "1")


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sts_rows(n: int, offset: int = 0) -> list[list[str]]:
    return [[f"a sentence {i + offset}", f"another sentence {i + offset}", f"{(i % 6) * 0.8:.1f}"] for i in range(n)]


def cls_rows(n: int) -> list[list[str]]:
    return [[f"text number {i}", str(i % 2)] for i in range(n)]


def make_data_dir(root: Path, *, stsb: bool = True, mr: bool = True) -> Path:
    """A tiny data dir with the layout of shared/data."""
    (root / "MANIFEST.sha256").parent.mkdir(parents=True, exist_ok=True)
    (root / "MANIFEST.sha256").write_text("", encoding="utf-8")
    if stsb:
        for split, n, off in (("train", 40, 0), ("dev", 10, 100), ("test", 20, 200)):
            write_tsv(root / "sts" / "stsb" / f"{split}.tsv", ["sentence1", "sentence2", "score"], sts_rows(n, off))
    if mr:
        write_tsv(root / "senteval" / "mr" / "all.tsv", ["sentence", "label"], cls_rows(30))
    return root


def sts_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "sentence1": [f"s1 {i}" for i in range(n)],
        "sentence2": [f"s2 {i}" for i in range(n)],
        "score": np.linspace(0, 5, n),
    })


def cls_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"sentence": [f"row {i}" for i in range(n)], "label": [i % 2 for i in range(n)]})


def err(fn, *args, **kwargs) -> str:
    """Message of the TunerError raised by fn; asserts it is a single line."""
    with pytest.raises(TunerError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("alias, expected", [
    ("STS-B", "stsb"), ("stsbenchmark", "stsb"), ("STSB", "stsb"), ("sts-b", "stsb"), ("sts_b", "stsb"),
    ("STSBenchmark", "stsb"), ("mteb/stsbenchmark-sts", "stsb"),
    ("SICK-R", "sickr"), ("sick", "sickr"), ("SICKR", "sickr"), ("sick_r", "sickr"),
    ("STS12", "sts12"), ("sts2012", "sts12"), ("STS-16", "sts16"), ("sts14", "sts14"),
    ("MR", "mr"), ("CR", "cr"), ("MPQA", "mpqa"), ("SUBJ", "subj"), ("subjectivity", "subj"),
    ("rotten_tomatoes", "mr"), (" mr ", "mr"),
])
def test_canonical_name_aliases(alias, expected):
    assert canonical_name(alias) == expected


@pytest.mark.parametrize("name", ["stsx", "", "sts17", "imdb", "my.csv"])
def test_canonical_name_unknown(name):
    assert canonical_name(name) is None


def test_builtin_tuples_and_hub_ids():
    assert STS_DATASETS == ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
    assert CLASSIFICATION_DATASETS == ("mr", "cr", "mpqa", "subj")
    assert PROTOCOLS == ("seed", "standard", "disjoint")
    for name in STS_DATASETS + CLASSIFICATION_DATASETS:
        assert canonical_name(name) == name
        assert "/" in HUB_IDS[name]
    assert HUB_IDS["stsb"] == "mteb/stsbenchmark-sts"
    assert HUB_IDS["sickr"] == "mteb/sickr-sts"


# ----------------------------------------------------------------------------- readers


def test_tsv_quoting_is_off(tmp_path):
    # Fields that start with a quote would swallow rows with pandas' default quoting.
    rows = [['"Quoted start', 'plain', "1.0"], ['x "mid" y', '"', "2"], ["'single", 'end"', "3.5"], ["last", "row", "4"]]
    f = write_tsv(tmp_path / "q.tsv", ["sentence1", "sentence2", "score"], rows)
    ds = load_dataset(str(f))
    df = ds.splits["all"]
    assert len(df) == 4
    assert df["sentence1"].tolist() == ['"Quoted start', 'x "mid" y', "'single", "last"]
    assert df["sentence2"].tolist()[1] == '"'
    assert df["score"].dtype == np.float64


def test_custom_tsv_sts(tmp_path):
    f = write_tsv(tmp_path / "my_pairs.tsv", ["sentence1", "sentence2", "score"], sts_rows(12))
    ds = load_dataset(f)  # os.PathLike works too
    assert ds.name == "my_pairs" and ds.task == "sts" and ds.score_range == (0.0, 5.0)
    assert list(ds.splits) == ["all"] and ds.source == str(f)
    assert not ds.builtin
    df = ds.official()
    assert list(df.columns) == ["sentence1", "sentence2", "score"]
    assert df["score"].dtype == np.float64
    assert isinstance(df["sentence1"].iloc[0], str)
    assert df.index.equals(pd.RangeIndex(12))


def test_custom_csv_quoting_on_and_extra_columns_dropped(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('id,sentence,label\n1,"hello, world",1\n2,"she said ""hi""",0\n3,plain,1\n', encoding="utf-8")
    ds = load_dataset(str(f))
    assert ds.task == "classification" and ds.score_range is None
    df = ds.official()
    assert list(df.columns) == ["sentence", "label"]
    assert df["sentence"].tolist() == ["hello, world", 'she said "hi"', "plain"]
    assert df["label"].dtype == np.int64 and df["label"].tolist() == [1, 0, 1]


def test_custom_parquet_and_jsonl_and_json(tmp_path):
    pq = tmp_path / "p.parquet"
    sts_frame(5).to_parquet(pq)
    assert load_dataset(str(pq)).task == "sts"
    jl = tmp_path / "j.jsonl"
    jl.write_text("\n".join(json.dumps({"sentence": f"t{i}", "label": i % 2}) for i in range(4)) + "\n", encoding="utf-8")
    ds = load_dataset(str(jl), name="mine")
    assert ds.name == "mine" and len(ds.official()) == 4 and ds.official()["label"].dtype == np.int64
    js = tmp_path / "a.json"
    js.write_text(json.dumps([{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}]), encoding="utf-8")
    assert len(load_dataset(str(js)).official()) == 2


def test_dataframe_spec_and_score_range(tmp_path):
    ds = load_dataset(sts_frame(6))
    assert ds.name == "dataframe" and ds.source == "<DataFrame>" and ds.score_range == (0.0, 5.0)
    df = sts_frame(6)
    df["score"] = np.linspace(1, 5, 6)
    ds = load_dataset(df, name="x", score_range=(1, 5))
    assert ds.name == "x" and ds.score_range == (1.0, 5.0)
    with pytest.raises(TunerError, match="outside 1..5"):
        load_dataset(sts_frame(6), score_range=(1, 5))  # score 0 on a 1..5 set


def test_labels_as_floats_and_strings_accepted():
    df = pd.DataFrame({"sentence": ["a", "b", "c"], "label": ["1", "0.0", " 1 "]})
    assert load_dataset(df).official()["label"].tolist() == [1, 0, 1]
    df = pd.DataFrame({"sentence": ["a", "b"], "label": [True, False]})
    assert load_dataset(df).official()["label"].tolist() == [1, 0]


def test_header_case_and_bom_normalised(tmp_path):
    f = tmp_path / "h.csv"
    f.write_text("\ufeffSentence , Label\nhi,1\nho,0\n", encoding="utf-8")
    assert load_dataset(str(f)).official()["sentence"].tolist() == ["hi", "ho"]


def test_split_column_used(tmp_path):
    rows = [[f"a{i}", f"b{i}", "1", s] for i, s in enumerate(["train"] * 6 + ["validation"] * 2 + ["test"] * 3)]
    f = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score", "split"], rows)
    ds = load_dataset(str(f))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "dev": 2, "test": 3}
    assert list(ds.official().columns) == ["sentence1", "sentence2", "score"]
    for proto in PROTOCOLS:
        parts = protocol_splits(ds, proto)
        assert parts["train"]["sentence1"].tolist() == [f"a{i}" for i in range(6)]
        assert parts["dev"]["sentence1"].tolist() == ["a6", "a7"]
        assert parts["test"]["sentence1"].tolist() == ["a8", "a9", "a10"]


def test_split_column_without_dev_carves_dev():
    df = cls_frame(30)
    df["split"] = ["train"] * 20 + ["test"] * 10
    ds = load_dataset(df)
    parts = protocol_splits(ds, "seed", dev_fraction=0.1)
    assert (len(parts["train"]), len(parts["dev"]), len(parts["test"])) == (18, 2, 10)


# ----------------------------------------------------------------------------- built-ins / resolution


def test_builtin_from_data_dir_argument(tmp_path, no_autodetect):
    root = make_data_dir(tmp_path / "data")
    ds = load_dataset("STS-B", data_dir=root)
    assert ds.name == "stsb" and ds.task == "sts" and ds.builtin
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 40, "dev": 10, "test": 20}
    assert len(ds.official()) == 20
    mr = load_dataset("MR", data_dir=str(root))
    assert mr.task == "classification" and list(mr.splits) == ["all"] and len(mr.official()) == 30


def test_builtin_from_env(tmp_path, monkeypatch):
    root = make_data_dir(tmp_path / "d")
    monkeypatch.setenv("TUNER_DATA_DIR", str(root))
    assert resolve_data_dir() == root
    assert len(load_dataset("mr").official()) == 30


def test_builtin_autodetect_shared_data(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNER_DATA_DIR", raising=False)
    monkeypatch.delenv("TUNER_NO_AUTODETECT", raising=False)
    work = tmp_path / "proj"
    work.mkdir()
    make_data_dir(work / "shared" / "data")
    monkeypatch.chdir(work)
    assert resolve_data_dir() == (work / "shared" / "data").resolve()
    monkeypatch.setenv("TUNER_NO_AUTODETECT", "1")
    assert resolve_data_dir() is None


def test_builtin_task_mismatch(tmp_path, no_autodetect):
    root = make_data_dir(tmp_path / "d")
    msg = err(load_dataset, "stsb", task="classification", data_dir=root)
    assert "'stsb'" in msg and "STS" in msg and "--task" in msg


def test_custom_name_and_explicit_task(tmp_path):
    f = write_tsv(tmp_path / "x.tsv", ["sentence", "label"], cls_rows(4))
    assert load_dataset(str(f), task="classification", name="foo").name == "foo"
    msg = err(load_dataset, str(f), task="sts")
    assert "'sentence1'" in msg or "sentence1" in msg


def test_partial_builtin_dir_is_an_error(tmp_path, no_autodetect):
    root = tmp_path / "d"
    write_tsv(root / "sts" / "stsb" / "test.tsv", ["sentence1", "sentence2", "score"], sts_rows(3))
    msg = err(load_dataset, "stsb", data_dir=root)
    assert "train.tsv" in msg and "dev.tsv" in msg and "stsb" in msg


def test_data_dir_missing(tmp_path):
    msg = err(load_dataset, "stsb", data_dir=tmp_path / "nope")
    assert "nope" in msg and "does not exist" in msg


def test_hub_offline_error_is_clean(tmp_path):
    """Real `datasets` offline path, in a subprocess so the offline env applies from import."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TUNER_NO_AUTODETECT="1",
               HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO_ROOT))
    env.pop("TUNER_DATA_DIR", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import sys\nfrom tuner.data import load_dataset\nfrom tuner.errors import TunerError\n"
        "try:\n    load_dataset('stsb', data_dir=sys.argv[1])\n"
        "except TunerError as e:\n    print('ERR:' + str(e))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(empty)], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line == ("ERR:dataset 'stsb' not found locally and the Hugging Face hub is unreachable; "
                    "pass --data-dir DIR (layout of shared/data) or set TUNER_DATA_DIR")


def _fake_datasets(monkeypatch, tables: dict[str, dict[str, pd.DataFrame]], calls: list | None = None):
    class _Split:
        def __init__(self, df):
            self._df = df

        def to_pandas(self):
            return self._df.copy()

    def fake_load(repo_id, *a, **k):
        if calls is not None:
            calls.append(repo_id)
        if repo_id not in tables:
            raise ConnectionError(f"Couldn't reach '{repo_id}' on the Hub")
        return {s: _Split(df) for s, df in tables[repo_id].items()}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load))


def test_hub_unreachable_via_fake_connection_error(tmp_path, monkeypatch, no_autodetect):
    calls = []
    _fake_datasets(monkeypatch, {}, calls)
    msg = err(load_dataset, "sick", data_dir=tmp_path)
    assert calls == ["mteb/sickr-sts"]
    assert msg.startswith("dataset 'sickr' not found locally and the Hugging Face hub is unreachable")
    assert "--data-dir" in msg and "TUNER_DATA_DIR" in msg


def test_hub_normalisation(tmp_path, monkeypatch, no_autodetect):
    sts = sts_frame(4)
    _fake_datasets(monkeypatch, {
        "mteb/stsbenchmark-sts": {"train": sts, "validation": sts.iloc[:2], "test": sts.iloc[:3]},
        "cornell-movie-review-data/rotten_tomatoes": {
            "train": pd.DataFrame({"text": ["a", "b"], "label": [1, 0]}),
            "validation": pd.DataFrame({"text": ["c"], "label": [1]}),
            "test": pd.DataFrame({"text": ["d"], "label": [0]}),
        },
        "SetFit/subj": {
            "train": pd.DataFrame({"text": ["obj", "subj"], "label": [0, 1], "label_text": ["objective", "subjective"]}),
            "test": pd.DataFrame({"text": ["s2"], "label": [1], "label_text": ["subjective"]}),
        },
    })
    stsb = load_dataset("stsb", data_dir=tmp_path)
    assert {k: len(v) for k, v in stsb.splits.items()} == {"train": 4, "dev": 2, "test": 3}
    assert stsb.source == "mteb/stsbenchmark-sts" and stsb.builtin
    mr = load_dataset("mr", data_dir=tmp_path)
    assert mr.official()["sentence"].tolist() == ["a", "b", "c", "d"]
    subj = load_dataset("subj", data_dir=tmp_path)
    assert subj.official()["label"].tolist() == [1, 0, 0]  # SentEval: objective = 1


# ----------------------------------------------------------------------------- validation errors


def test_error_missing_column_lists_found(tmp_path):
    f = tmp_path / "my.csv"
    f.write_text("sentence1,sentence2,similarity\na,b,1\n", encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: column 'score' is missing")
    assert "sentence1, sentence2, score" in msg and "(found: sentence1, sentence2, similarity)" in msg
    assert "rename 'similarity' to 'score'" in msg


def test_error_text_label_columns_hint(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("text,label\nhello,1\n", encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert "column 'sentence' is missing" in msg and "found: text, label" in msg
    assert "rename 'text' to 'sentence'" in msg


def test_error_sentence_a_columns_hint(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("sentence_a,sentence_b,score\nx,y,1\n", encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert "'sentence1', 'sentence2' are missing" in msg
    assert "rename 'sentence_a' to 'sentence1'" in msg and "found: sentence_a, sentence_b, score" in msg


def test_error_cannot_infer_task(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert str(f) in msg and "found: a, b, c" in msg and "--task" in msg


def test_error_empty_file(tmp_path):
    for name in ("e.tsv", "e.csv", "e.jsonl"):
        f = tmp_path / name
        f.write_text("", encoding="utf-8")
        msg = err(load_dataset, str(f))
        assert str(f) in msg and "empty" in msg


def test_error_header_only(tmp_path):
    f = write_tsv(tmp_path / "h.tsv", ["sentence1", "sentence2", "score"], [])
    msg = err(load_dataset, str(f))
    assert str(f) in msg and "no data rows" in msg


def test_error_blank_sts_sentence(tmp_path):
    rows = sts_rows(5)
    rows[3][1] = "  "
    f = write_tsv(tmp_path / "b.tsv", ["sentence1", "sentence2", "score"], rows)
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: row 4: column 'sentence2' is empty")


def test_error_nan_sentence_parquet(tmp_path):
    df = sts_frame(4)
    df.loc[2, "sentence1"] = None
    f = tmp_path / "n.parquet"
    df.to_parquet(f)
    msg = err(load_dataset, str(f))
    assert "row 3" in msg and "'sentence1'" in msg and "missing" in msg and str(f) in msg


def test_error_blank_custom_classification_sentence(tmp_path):
    f = write_tsv(tmp_path / "c.tsv", ["sentence", "label"], [["ok", "1"], ["", "0"], ["", "1"]])
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: row 2: column 'sentence' is empty (and 1 more row)")


def test_error_non_numeric_score(tmp_path):
    rows = sts_rows(4)
    rows[2][2] = "high"
    f = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score"], rows)
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: row 3: column 'score' 'high' is not a number")


def test_error_empty_score(tmp_path):
    rows = sts_rows(4)
    rows[0][2] = ""
    f = write_tsv(tmp_path / "s.tsv", ["sentence1", "sentence2", "score"], rows)
    msg = err(load_dataset, str(f))
    assert "row 1: column 'score' is empty" in msg


def test_error_out_of_range_score(tmp_path):
    rows = sts_rows(4)
    rows[1][2] = "7"
    f = write_tsv(tmp_path / "r.tsv", ["sentence1", "sentence2", "score"], rows)
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: row 2: score 7 is outside 0..5")
    assert "score_range" in msg
    assert load_dataset(str(f), score_range=(0, 10)).score_range == (0.0, 10.0)


def test_error_string_labels(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("sentence,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert str(f) in msg and "column 'label'" in msg and "'neg', 'pos'" in msg and "0/1" in msg
    assert "neg -> 0" in msg and "pos -> 1" in msg


def test_error_three_classes():
    df = pd.DataFrame({"sentence": ["a", "b", "c"], "label": [0, 1, 2]})
    msg = err(load_dataset, df, name="multi")
    assert "DataFrame 'multi'" in msg
    assert "3 classes {0,1,2}; only binary classification (labels 0/1) is supported" in msg


def test_error_labels_not_01():
    df = pd.DataFrame({"sentence": ["a", "b"], "label": [1, 2]})
    msg = err(load_dataset, df)
    assert "row 2: label 2 is not 0 or 1" in msg and "{1,2}" in msg


def test_error_fractional_label():
    df = pd.DataFrame({"sentence": ["a", "b"], "label": [0.0, 0.5]})
    msg = err(load_dataset, df)
    assert "row 2: label 0.5 is not 0 or 1" in msg


def test_error_bad_split_value():
    df = cls_frame(3)
    df["split"] = ["train", "tset", "test"]
    msg = err(load_dataset, df)
    assert "row 2: column 'split' is 'tset'" in msg and "train, dev or test" in msg


def test_error_unreadable_path(tmp_path, monkeypatch):
    f = write_tsv(tmp_path / "secret.tsv", ["sentence", "label"], cls_rows(2))
    monkeypatch.setattr(data_readers.os, "access", lambda *a, **k: False)
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: permission denied")


def test_error_directory_and_data_dir_paths(tmp_path):
    d = tmp_path / "folder"
    d.mkdir()
    msg = err(load_dataset, str(d))
    assert str(d) in msg and "directory" in msg
    root = make_data_dir(tmp_path / "data")
    msg = err(load_dataset, str(root))
    assert "data directory" in msg and f"--data-dir {root}" in msg


def test_error_file_not_found(tmp_path):
    msg = err(load_dataset, str(tmp_path / "missing.csv"))
    assert "missing.csv" in msg and "file not found" in msg


def test_error_unsupported_suffix(tmp_path):
    f = tmp_path / "book.xlsx"
    f.write_bytes(b"PK\x03\x04")
    msg = err(load_dataset, str(f))
    assert str(f) in msg and "unsupported file type '.xlsx'" in msg and ".parquet" in msg


def test_error_tsv_parse(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("sentence\tlabel\na\t1\nb\tc\t0\n", encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert str(f) in msg and "line 3" in msg and "tab" in msg


def test_error_bad_jsonl_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"sentence": "a", "label": 1}\nnot json\n', encoding="utf-8")
    msg = err(load_dataset, str(f))
    assert msg.startswith(f"{f}: line 2 is not valid JSON")


def test_error_not_utf8(tmp_path):
    f = tmp_path / "l1.tsv"
    f.write_bytes("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    msg = err(load_dataset, str(f))
    assert str(f) in msg and "UTF-8" in msg


def test_error_unknown_dataset(no_autodetect):
    msg = err(load_dataset, "stsx")
    assert msg.startswith("unknown dataset 'stsx'")
    assert "sts12, sts13, sts14, sts15, sts16, stsb, sickr, mr, cr, mpqa, subj" in msg
    assert ".csv/.tsv/.parquet/.jsonl" in msg
    assert "did you mean 'stsb'?" in err(load_dataset, "stsbb")


def test_error_unknown_task():
    msg = err(load_dataset, cls_frame(3), task="regressionx")
    assert "unknown task 'regressionx'" in msg


def test_check_min_rows():
    check_min_rows(cls_frame(32), 32, "train split of 'x'")
    msg = err(check_min_rows, cls_frame(12), 32, "train split of 'x'")
    assert msg == "train split of 'x' has 12 rows, fewer than one batch (32); lower --batch-size or add data"


# ----------------------------------------------------------------------------- splits


def _ids(df: pd.DataFrame) -> set:
    return set(df["sentence"])


def test_seed_protocol_matches_train_test_split():
    ds = load_dataset(cls_frame(100), name="t")
    parts = protocol_splits(ds, "seed", seed=42)
    rest, test = train_test_split(ds.official(), test_size=0.3, random_state=42)
    assert parts["test"].equals(test.reset_index(drop=True))
    tr, dev = train_test_split(rest, test_size=0.1, random_state=42)
    assert parts["train"].equals(tr.reset_index(drop=True))
    assert parts["dev"].equals(dev.reset_index(drop=True))
    assert (len(parts["train"]), len(parts["dev"]), len(parts["test"])) == (63, 7, 30)


def test_splits_disjoint_covering_index_reset():
    ds = load_dataset(cls_frame(57))
    for proto in PROTOCOLS:
        parts = protocol_splits(ds, proto, seed=7)
        a, b, c = (_ids(parts[k]) for k in ("train", "dev", "test"))
        assert not (a & b) and not (a & c) and not (b & c)
        assert a | b | c == _ids(ds.official())
        assert sum(len(p) for p in parts.values()) == 57
        for p in parts.values():
            assert p.index.equals(pd.RangeIndex(len(p)))


def test_splits_deterministic_and_seed_dependent():
    ds = load_dataset(cls_frame(80))
    a = protocol_splits(ds, "seed", seed=3)
    b = protocol_splits(ds, "seed", seed=3)
    c = protocol_splits(ds, "seed", seed=4)
    for k in a:
        assert a[k].equals(b[k])
    assert not a["test"].equals(c["test"])


def test_standard_equals_seed_without_official_splits():
    ds = load_dataset(sts_frame(40))
    s, t = protocol_splits(ds, "seed"), protocol_splits(ds, "standard")
    for k in s:
        assert s[k].equals(t[k])


def _fake_builtin_stsb() -> Dataset:
    return Dataset(
        name="stsb", task="sts", source="x", score_range=(0.0, 5.0), builtin=True,
        splits={"train": sts_frame(50), "dev": sts_frame(10), "test": sts_frame(20).assign(sentence1=lambda d: "t" + d.sentence1)},
    )


def test_standard_uses_official_splits_for_stsb():
    ds = _fake_builtin_stsb()
    parts = protocol_splits(ds, "standard")
    for k in ("train", "dev", "test"):
        assert parts[k].equals(ds.splits[k])


def test_seed_protocol_uses_test_table_for_stsb():
    ds = _fake_builtin_stsb()
    parts = protocol_splits(ds, "seed")
    assert sum(len(p) for p in parts.values()) == 20
    assert all(s.startswith("ts1") for p in parts.values() for s in p["sentence1"])
    assert len(parts["test"]) == 6


def test_unknown_protocol_and_bad_fraction():
    ds = load_dataset(cls_frame(10))
    msg = err(protocol_splits, ds, "kfold")
    assert "unknown protocol 'kfold'" in msg and "seed, standard" in msg
    assert "dev_fraction" in err(protocol_splits, ds, "seed", dev_fraction=1.5)


def test_too_small_to_split():
    ds = load_dataset(cls_frame(1), name="tiny")
    msg = err(protocol_splits, ds, "seed")
    assert "'tiny'" in msg and "1 row" in msg


def test_dev_fraction_zero_gives_empty_dev():
    parts = protocol_splits(load_dataset(cls_frame(20)), "seed", dev_fraction=0)
    assert len(parts["dev"]) == 0 and len(parts["train"]) == 14 and list(parts["dev"].columns) == ["sentence", "label"]


def test_subsample():
    df = cls_frame(50)
    assert subsample(df, None, 1) is df
    assert subsample(df, 50, 1) is df and subsample(df, 80, 1) is df
    a, b = subsample(df, 10, 5), subsample(df, 10, 5)
    assert len(a) == 10 and a.equals(b) and a.index.equals(pd.RangeIndex(10))
    assert not a.equals(subsample(df, 10, 6))
    assert _ids(a) <= _ids(df)
    assert "max_train_examples" in err(subsample, df, 0, 1)


# ----------------------------------------------------------------------------- real data

REAL_COUNTS = {
    "sts12": {"test": 3108},
    "sts13": {"test": 1500},
    "sts14": {"test": 3750},
    "sts15": {"test": 3000},
    "sts16": {"test": 1186},
    "stsb": {"train": 5749, "dev": 1500, "test": 1379},
    "sickr": {"train": 4500, "dev": 500, "test": 4927},
    "mr": {"all": 10662},
    "cr": {"all": 3775},
    "mpqa": {"all": 10606},
    "subj": {"all": 10000},
}
REAL_LABELS = {"mr": (5331, 5331), "cr": (2407, 1368), "mpqa": (3312, 7294), "subj": (5000, 5000)}  # (1s, 0s)
REAL_EMPTY = {"cr": [2322, 2406, 3175, 3774], "mpqa": [3311, 9726, 10605], "mr": [], "subj": []}


@pytest.fixture(scope="module")
def real_dir():
    d = real_data_dir()
    if not (d / "sts").is_dir():
        if os.environ.get("CI"):  # CI must run the real-data tests: a missing folder is a failure there
            pytest.fail(f"real data not found at {d} (CI must provide it; set TUNER_DATA_DIR)")
        pytest.skip(f"real data not found at {d} (skipped outside CI)")
    return d


@pytest.fixture(scope="module")
def real_sets(real_dir):
    return {name: load_dataset(name, data_dir=real_dir) for name in REAL_COUNTS}


@pytest.mark.real
@pytest.mark.parametrize("name", list(REAL_COUNTS))
def test_real_row_counts(real_sets, real_dir, name):
    ds = real_sets[name]
    assert ds.name == name and ds.builtin
    assert {k: len(v) for k, v in ds.splits.items()} == REAL_COUNTS[name]
    folder = real_dir / ("sts" if name in STS_DATASETS else "senteval") / name
    for split, df in ds.splits.items():
        # quoting off: every physical line (minus the header) is a row
        with open(folder / f"{split}.tsv", encoding="utf-8") as fh:
            assert sum(1 for _ in fh) - 1 == len(df)
        assert df.index.equals(pd.RangeIndex(len(df)))


@pytest.mark.real
@pytest.mark.parametrize("name", STS_DATASETS)
def test_real_sts_scores(real_sets, name):
    ds = real_sets[name]
    lo, hi = (1.0, 5.0) if name == "sickr" else (0.0, 5.0)
    assert ds.score_range == (lo, hi) and ds.task == "sts"
    allscores = pd.concat([df["score"] for df in ds.splits.values()])
    assert allscores.dtype == np.float64
    assert allscores.min() == lo and allscores.max() == hi
    for df in ds.splits.values():
        assert list(df.columns) == ["sentence1", "sentence2", "score"]
        assert (df["sentence1"].str.len() > 0).all() and (df["sentence2"].str.len() > 0).all()


@pytest.mark.real
@pytest.mark.parametrize("name", CLASSIFICATION_DATASETS)
def test_real_classification_labels_and_empty_sentences(real_sets, name):
    df = real_sets[name].official()
    assert list(df.columns) == ["sentence", "label"] and df["label"].dtype == np.int64
    assert (int((df["label"] == 1).sum()), int((df["label"] == 0).sum())) == REAL_LABELS[name]
    assert df.index[df["sentence"] == ""].tolist() == REAL_EMPTY[name]
    assert real_sets[name].score_range is None


@pytest.mark.real
def test_real_quoting_matters(real_dir):
    """Default pandas quoting loses STS14 rows; our reader keeps them all (and quote-led fields)."""
    path = real_dir / "sts" / "sts14" / "test.tsv"
    assert len(pd.read_csv(path, sep="\t")) < 3750
    ours = load_dataset("sts14", data_dir=real_dir).official()
    ref = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
    assert ours["sentence1"].tolist() == ref["sentence1"].tolist()
    assert ours["score"].tolist() == ref["score"].astype(float).tolist()
    assert ours["sentence1"].str.startswith('"').any()


@pytest.mark.real
def test_real_protocols(real_sets):
    stsb = real_sets["stsb"]
    std = protocol_splits(stsb, "standard")
    assert {k: len(v) for k, v in std.items()} == {"train": 5749, "dev": 1500, "test": 1379}
    seed = protocol_splits(stsb, "seed")
    _, test = train_test_split(stsb.official(), test_size=0.3, random_state=42)
    assert seed["test"].equals(test.reset_index(drop=True))
    assert sum(len(v) for v in seed.values()) == 1379
    mr = real_sets["mr"]
    a, b = protocol_splits(mr, "seed"), protocol_splits(mr, "standard")
    assert all(a[k].equals(b[k]) for k in a)
    assert len(a["test"]) == 3199
