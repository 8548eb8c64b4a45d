"""Engine end to end on the tiny random-init BERT and tiny data; CLI exit codes and one-line errors."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import WORDS, tiny_sentences
from tuner.cli import main
from tuner.engine._run import evaluate_model, prepare_data, run_finetune
from tuner.config import RunConfig


@pytest.fixture(scope="session")
def word_model_dir(tmp_path_factory):
    """conftest's tiny random BERT with a tokenizer that knows WORDS.

    (conftest's ``BertTokenizerFast(vocab_file=...)`` loads no vocabulary under transformers 5: every
    word becomes [UNK], so that model only sees sentence lengths and its similarities tie a lot.)
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("word-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    assert tok.tokenize("man guitar") == ["man", "guitar"]
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def reference_embeddings(model_dir, texts: list[str]) -> np.ndarray:
    """CLS vectors from plain transformers, one sentence at a time (no tuner code, no padding)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return np.stack([model(**tok(t, return_tensors="pt", truncation=True, max_length=128)).last_hidden_state[0, 0]
                         .numpy() for t in texts])


def reference_sts(model_dir, frame: pd.DataFrame) -> float:
    from scipy.stats import spearmanr

    # float64: a random-init model's cosines all lie within ~1e-5 of 1, below float32's resolution
    a = reference_embeddings(model_dir, frame["sentence1"].tolist()).astype(np.float64)
    b = reference_embeddings(model_dir, frame["sentence2"].tolist()).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(spearmanr(cos, frame["score"]).statistic)


def reference_seed_lr(model_dir, train: pd.DataFrame, test: pd.DataFrame) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=10000).fit(reference_embeddings(model_dir, train["sentence"].tolist()),
                                                 train["label"])
    return float(clf.score(reference_embeddings(model_dir, test["sentence"].tolist()), test["label"]))


def test_evaluate_official_splits(word_model_dir, tiny_data_dir):
    from test_senteval_cv import reference as senteval_reference

    from tuner.data import load_dataset

    tiny_model_dir = word_model_dir
    table = evaluate_model(str(tiny_model_dir), ["stsb", "sts12", "mr"], data_dir=tiny_data_dir, device="cpu")
    assert list(table["dataset"]) == ["stsb", "sts12", "mr"]
    assert list(table["metric"]) == ["spearman", "spearman", "accuracy"]
    assert table.loc[2, "classification_protocol"] == "senteval"
    assert list(table["n"]) == [48, 48, 48]
    # reference values from plain transformers + scipy/sklearn, not from tuner's evaluation code
    for i, name in enumerate(("stsb", "sts12")):
        frame = load_dataset(name, data_dir=tiny_data_dir).official()
        assert table.loc[i, "score"] == pytest.approx(reference_sts(tiny_model_dir, frame), abs=1e-6)
    mr = load_dataset("mr", data_dir=tiny_data_dir).official()
    ref = senteval_reference(reference_embeddings(tiny_model_dir, mr["sentence"].tolist()), mr["label"].to_numpy(),
                             mr["sentence"].tolist())
    assert table.loc[2, "score"] == pytest.approx(ref["acc"] / 100, abs=1e-12)


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


def test_run_finetune_classification_scores_dev_and_test(word_model_dir, tiny_data_dir, tmp_path):
    config = RunConfig(model=str(word_model_dir), train=["mr"], data_dir=str(tiny_data_dir), batch_size=8, max_steps=2)
    outcome = run_finetune(config, device="cpu", progress=False, output=tmp_path / "m")
    assert outcome.metric == "accuracy"
    assert set(outcome.scores["dev"]) == {"mr"} and set(outcome.scores["test"]) == {"mr"}
    # reference: the saved model's CLS vectors (plain transformers) and sklearn's LogisticRegression
    parts = prepare_data(config).eval[0][1]
    for split in ("dev", "test"):
        assert outcome.scores[split]["mr"] == pytest.approx(
            reference_seed_lr(tmp_path / "m", parts["train"], parts[split]), abs=1e-12)
