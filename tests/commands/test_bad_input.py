"""The bad-input catalogue: what users will get wrong, one row each.

Every row must end with exit status 2, exactly one line on stderr that starts with ``error:``
(no traceback), a fragment that names the problem, and nothing written to the storage.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tuner.cli import main

GOOD_STUDY = """
task = "sts"
models = ["{model}"]
protocol = "standard"
sampler = "tpe"
pruner = "none"
n_trials = 1
data_dir = "{data}"
[data]
train = ["stsb"]
[budget]
max_steps = 1
[train]
batch_size = 8
[search]
w_cosent = [0.0, 1.0]
"""


def _study(tmp: Path, model: Path, data: Path, body: str = GOOD_STUDY, **replace: str) -> str:
    text = body.format(model=model, data=data)
    for old, new in replace.items():
        text = text.replace(old.replace("__", " "), new)
    path = tmp / "s.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _file(tmp: Path, name: str, content: str) -> str:
    path = tmp / name
    path.write_text(content)
    return str(path)


STS_HEADER = "sentence1\tsentence2\tscore\n"
ROWS = "".join(f"a man is playing\ta dog runs\t{i % 5}\n" for i in range(20))

# (id, argv builder, expected fragment). Builders get (tmp, tiny_model, tiny_data, storage_url).
CATALOGUE = [
    # --- CLI flags
    ("workers-0", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d), "--storage", s, "--workers", "0"], "workers"),
    ("gpu-missing", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d), "--storage", s, "--gpus", "7"], "GPU"),
    ("weight-negative", lambda t, m, d, s: ["finetune", "--model", str(m), "--data-dir", str(d), "--train", "stsb", "--weights", "cosent=-1"], "cosent"),
    ("tau-zero", lambda t, m, d, s: ["finetune", "--model", str(m), "--data-dir", str(d), "--train", "stsb", "--taus", "cosent=0"], "tau"),
    ("loss-unknown", lambda t, m, d, s: ["finetune", "--model", str(m), "--data-dir", str(d), "--train", "stsb", "--weights", "focal=1"], "unknown loss"),
    ("weights-syntax", lambda t, m, d, s: ["finetune", "--model", str(m), "--data-dir", str(d), "--train", "stsb", "--weights", "cosent"], "NAME=VALUE"),
    ("lr-zero", lambda t, m, d, s: ["finetune", "--model", str(m), "--data-dir", str(d), "--train", "stsb", "--lr", "0"], "lr"),
    ("batch-one", lambda t, m, d, s: ["finetune", "--model", str(m), "--data-dir", str(d), "--train", "stsb", "--batch-size", "1"], "--batch-size is 1"),
    ("pooling-unknown", lambda t, m, d, s: ["evaluate", "--model", str(m), "--data-dir", str(d), "--datasets", "stsb", "--pooling", "median"], "pooling"),
    ("dataset-unknown", lambda t, m, d, s: ["evaluate", "--model", str(m), "--data-dir", str(d), "--datasets", "stsx"], "unknown dataset"),
    ("split-unknown", lambda t, m, d, s: ["evaluate", "--model", str(m), "--data-dir", str(d), "--datasets", "sts12", "--split", "train"], "split"),
    ("data-dir-missing", lambda t, m, d, s: ["evaluate", "--model", str(m), "--data-dir", str(t / "nowhere"), "--datasets", "stsb"], "nowhere"),
    # --- study files
    ("study-unknown-name", lambda t, m, d, s: ["optimize", "--study", "no-such-study", "--storage", s], "no-such-study"),
    ("toml-malformed", lambda t, m, d, s: ["optimize", "--study", _file(t, "bad.toml", "task = [sts\n"), "--storage", s], "bad.toml"),
    ("key-unknown", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, n_trials="n_trails"), "--storage", s], "n_trails"),
    ("type-wrong", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{"n_trials = 1": 'n_trials = "ten"'}), "--storage", s], "n_trials"),
    ("sampler-unknown", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{'"tpe"': '"bayes"'}), "--storage", s], "sampler"),
    ("pruner-unknown", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{'pruner = "none"': 'pruner = "asha"'}), "--storage", s], "pruner"),
    ("range-inverted", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{"[0.0, 1.0]": "[1.0, 0.0]"}), "--storage", s], "w_cosent"),
    ("weight-range-negative", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{"[0.0, 1.0]": "[-1.0, 1.0]"}), "--storage", s], "w_cosent"),
    ("tau-range-zero", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{"w_cosent = [0.0, 1.0]": "tau_cosent = [0.0, 10.0]"}), "--storage", s], "tau_cosent"),
    ("search-pooling-unknown", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{"w_cosent = [0.0, 1.0]": 'pooling = ["cls", "median"]'}), "--storage", s], "median"),
    ("task-unknown", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d, **{'task = "sts"': 'task = "nli"'}), "--storage", s], "task"),
    ("grid-empty", lambda t, m, d, s: ["optimize", "--study", _file(t, "g.toml", f'task = "sts"\nmodels = ["{m}"]\nsampler = "grid"\ndata_dir = "{d}"\n[data]\ndatasets = ["sts12"]\n[grid]\nlosses = []\n'), "--storage", s], "losses"),
    ("grid-no-datasets", lambda t, m, d, s: ["optimize", "--study", _file(t, "g2.toml", f'task = "sts"\nmodels = ["{m}"]\nsampler = "grid"\n[data]\ndatasets = []\n'), "--storage", s], "datasets"),
    # --- dataset files
    ("column-missing", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "c.tsv", "sentence1\tscore\na\t1\nb\t2\n")], "sentence2"),
    ("score-nan", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "n.csv", "sentence1,sentence2,score\na b,c d,\ne f,g h,2\n")], "n.csv"),
    ("file-empty", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "e.csv", "")], "e.csv"),
    ("header-only", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "h.tsv", STS_HEADER)], "h.tsv"),
    ("score-out-of-range", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "r.csv", "sentence1,sentence2,score\na b,c d,7\ne f,g h,2\n")], "7"),
    ("score-not-numeric", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "x.csv", "sentence1,sentence2,score\na b,c d,high\ne f,g h,2\n")], "high"),
    ("three-classes", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "k.csv", "sentence,label\na,0\nb,1\nc,2\n")], "3 classes"),
    ("label-strings", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "l.csv", "sentence,label\na,pos\nb,neg\n")], "l.csv"),
    ("text-blank", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "b.csv", "sentence1,sentence2,score\na b,  ,1\ne f,g h,2\n")], "b.csv"),
    ("suffix-unsupported", lambda t, m, d, s: ["evaluate", "--model", str(m), "--datasets", _file(t, "d.xlsx", "x")], "d.xlsx"),
    ("smaller-than-batch", lambda t, m, d, s: ["finetune", "--model", str(m), "--train", _file(t, "small.tsv", STS_HEADER + ROWS), "--batch-size", "64", "--max-steps", "1"], "batch"),
    # --- storage URLs
    ("storage-typo", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d), "--storage", "postgresq://u:pw@127.0.0.1/test"], "postgresq"),
    ("storage-unreachable", lambda t, m, d, s: ["optimize", "--study", _study(t, m, d), "--storage", "postgresql://u:hunter2@127.0.0.1:1/test"], "127.0.0.1"),
    ("status-unknown-study", lambda t, m, d, s: ["status", "--study", "nothing-here", "--storage", s], "nothing-here"),
    # --- model names
    ("model-missing", lambda t, m, d, s: ["evaluate", "--model", str(t / "no-model"), "--datasets", "stsb", "--data-dir", str(d)], "does not exist"),
    ("model-not-a-model", lambda t, m, d, s: ["evaluate", "--model", str(t), "--datasets", "stsb", "--data-dir", str(d)], "not a model folder"),
    # --- export
    ("export-no-complete", lambda t, m, d, s: ["export", "--study", "empty-study", "--storage", s, "--out", str(t / "out")], "empty-study"),
]


@pytest.mark.parametrize("case_id, build, fragment", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input(case_id, build, fragment, tmp_path, tiny_model_dir, tiny_data_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_NO_AUTODETECT", "1")
    db = tmp_path / "store.db"
    storage = f"sqlite:///{db}"
    if case_id == "export-no-complete":
        import optuna

        optuna.create_study(study_name="empty-study", storage=storage)
    before = _snapshot(storage) if db.exists() else None
    code = main(build(tmp_path, tiny_model_dir, tiny_data_dir, storage))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    assert fragment.lower() in err.lower(), err
    assert "hunter2" not in err  # passwords never printed
    after = _snapshot(storage) if db.exists() else None
    assert after == before, "bad input must not write to the storage"
    assert not (tmp_path / "tuner.db").exists()


def _snapshot(storage: str):
    import optuna

    return sorted((s.study_name, s.n_trials) for s in optuna.get_all_study_summaries(storage))
