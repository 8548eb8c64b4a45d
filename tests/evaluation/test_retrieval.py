"""Retrieval on BEIR folders (tuner.data.beir, tuner.evaluation._retrieval): the metrics by hand,
chunked exact search, bad folders, and the same numbers as sentence-transformers'
``InformationRetrievalEvaluator`` on the same folder (tiny model always; MiniLM on the SNLI-built
set, marked real)."""
from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tuner
from conftest import REPO, SHARED_DATA, WORDS, tiny_sentences
from tuner.data import load_dataset
from tuner.data.beir import load_beir
from tuner.errors import TunerError
from tuner.evaluation import RETRIEVAL_METRICS, evaluate_retrieval, query_metrics
from tuner.models import load_encoder, resolve_model


def write_beir(root: Path, corpus: dict[str, str], queries: dict[str, str],
               qrels: dict[str, dict[str, int]]) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in corpus.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    for split in ("dev", "test"):
        rows = "".join(f"{q}\t{d}\t{s}\n" for q, docs in qrels.items() for d, s in docs.items())
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return root


def tiny_beir(root: Path, n_docs: int = 60, n_queries: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    docs = tiny_sentences(n_docs, seed)
    corpus = {f"d{i}": text for i, text in enumerate(docs)}
    queries, qrels = {}, {}
    for q in range(n_queries):
        picks = rng.sample(range(n_docs), rng.randint(1, 3))
        words = " ".join(docs[picks[0]].split()[:3])  # the query shares words with its first relevant doc
        queries[f"q{q}"] = f"{words} {rng.choice(WORDS)}"
        qrels[f"q{q}"] = {f"d{i}": 1 for i in picks} | {f"d{(picks[0] + 1) % n_docs}": 0}  # 0: judged, not relevant
    return write_beir(root, corpus, queries, qrels)


def test_query_metrics_by_hand():
    ranked = ["a", "x", "b", "y"]
    m = query_metrics(ranked, {"a", "b", "c"})
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert m["mrr@10"] == 1.0
    assert m["recall@10"] == pytest.approx(2 / 3) and m["recall@100"] == pytest.approx(2 / 3)
    assert m["map@100"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    late = query_metrics(["x"] * 10 + ["a"], {"a"})  # found at rank 11: outside every @10 cut-off
    assert (late["ndcg@10"], late["mrr@10"], late["recall@10"], late["recall@100"]) == (0.0, 0.0, 0.0, 1.0)
    assert late["map@100"] == pytest.approx(1 / 11)


def test_matches_sentence_transformers_evaluator(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    ds = load_dataset(str(tiny_beir(tmp_path / "ir")))
    assert ds.task == "retrieval" and set(ds.splits) == {"dev", "test"}
    assert (ds.splits["test"]["score"] > 0).all()  # judged-irrelevant rows are not relevance
    encoder = load_encoder(str(tiny_model_dir), pooling="avg", device="cpu")
    ours = evaluate_retrieval(encoder, ds.corpus, ds.queries, ds.splits["test"], max_seq_length=64)
    relevant: dict[str, set] = {}
    for q, d in zip(ds.splits["test"]["query_id"], ds.splits["test"]["corpus_id"]):
        relevant.setdefault(q, set()).add(d)
    evaluator = InformationRetrievalEvaluator(
        dict(zip(ds.queries["id"], ds.queries["text"])), dict(zip(ds.corpus["id"], ds.corpus["text"])), relevant,
        ndcg_at_k=[10], mrr_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[10, 100], map_at_k=[100],
        show_progress_bar=False)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.max_seq_length = 64
    theirs = evaluator(model)
    for metric in RETRIEVAL_METRICS:
        assert ours[metric] == pytest.approx(theirs[f"cosine_{metric}"], abs=1e-4), metric
    assert ours["n"] == 12 and 0 < ours["ndcg@10"] < 1


def test_chunked_search_equals_one_pass(tiny_model_dir, tmp_path):
    ds = load_beir(tiny_beir(tmp_path / "ir", n_docs=40, n_queries=8, seed=3))
    encoder = load_encoder(str(tiny_model_dir), pooling="avg", device="cpu")
    whole = evaluate_retrieval(encoder, ds.corpus, ds.queries, ds.splits["dev"], return_items=True)
    chunked = evaluate_retrieval(encoder, ds.corpus, ds.queries, ds.splits["dev"], corpus_chunk=7, return_items=True)
    for metric in RETRIEVAL_METRICS:
        assert chunked[metric] == pytest.approx(whole[metric], abs=1e-9), metric
    np.testing.assert_allclose(chunked["per_query"], whole["per_query"])
    assert chunked["query_ids"] == whole["query_ids"] and len(whole["per_query"]) == 8


def test_evaluate_api_and_cli_score_a_beir_folder(tiny_model_dir, tmp_path, capsys):
    folder = tiny_beir(tmp_path / "ir")
    table = tuner.evaluate(str(tiny_model_dir), [str(folder)], pooling="avg", device="cpu")
    row = table.iloc[0]
    assert (row["task"], row["metric"], row["split"], row["n"]) == ("retrieval", "ndcg@10", "test", 12)
    assert row["score"] == row["ndcg@10"] and 0 <= row["map@100"] <= 1
    from tuner.cli import main

    assert main(["evaluate", "--model", str(tiny_model_dir), "--datasets", str(folder), "--split", "dev",
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["split"] == "dev" and set(RETRIEVAL_METRICS) <= set(result)
    code = main(["evaluate", "--model", str(tiny_model_dir), "--datasets", str(folder), "--protocol", "seed"])
    assert code == 2 and "drop --protocol" in capsys.readouterr().err


@pytest.mark.parametrize("breakage, fragment", [
    (lambda root: (root / "queries.jsonl").unlink(), "no queries.jsonl"),
    (lambda root: (root / "corpus.jsonl").write_text("{\"_id\": \"d0\", \"text\": \"x\"}\nnot json\n"),
     "corpus.jsonl: line 2 is not JSON"),
    (lambda root: (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td999\t1\n"),
     "row 1: corpus-id 'd999' is not in corpus.jsonl"),
    (lambda root: (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq99\td0\t1\n"),
     "row 1: query-id 'q99' is not in queries.jsonl"),
    (lambda root: (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t0\n"),
     "marks no document relevant"),
    (lambda root: (root / "queries.jsonl").write_text("{\"_id\": \"q0\"}\n"), "needs \"_id\" and \"text\""),
])
def test_bad_folders_are_one_line(tmp_path, breakage, fragment):
    root = tiny_beir(tmp_path / "ir")
    breakage(root)
    with pytest.raises(TunerError) as exc:
        load_dataset(str(root))
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.real
def test_minilm_on_snli_retrieval_matches_sentence_transformers(tmp_path):
    """The offline retrieval set built from SNLI (scripts/snli_retrieval.py), the bundled MiniLM:
    tuner's exact search and metrics equal sentence-transformers' evaluator within 1e-4."""
    if not (SHARED_DATA / "nli" / "snli" / "test.tsv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    sys.path.insert(0, str(REPO / "scripts"))
    from snli_retrieval import build

    sizes = build(SHARED_DATA, tmp_path / "snli")
    assert sizes["corpus"] > 19_000 and sizes["test"]["queries"] > 3_000
    ds = load_dataset(str(tmp_path / "snli"))
    encoder = load_encoder("all-MiniLM-L6-v2", device="cpu")
    ours = evaluate_retrieval(encoder, ds.corpus, ds.queries, ds.splits["test"], max_seq_length=128)
    qrels: pd.DataFrame = ds.splits["test"]
    relevant: dict[str, set] = {}
    for q, d in zip(qrels["query_id"], qrels["corpus_id"]):
        relevant.setdefault(q, set()).add(d)
    evaluator = InformationRetrievalEvaluator(
        dict(zip(ds.queries["id"], ds.queries["text"])), dict(zip(ds.corpus["id"], ds.corpus["text"])), relevant,
        ndcg_at_k=[10], mrr_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[10, 100], map_at_k=[100],
        show_progress_bar=False, batch_size=64)
    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = 128
    theirs = evaluator(model)
    for metric in RETRIEVAL_METRICS:
        assert ours[metric] == pytest.approx(theirs[f"cosine_{metric}"], abs=1e-4), metric


def test_a_retrieval_folder_is_an_eval_set_of_a_fine_tune_run(tiny_model_dir, tiny_data_dir, tmp_path):
    """Train on STS pairs, select on the folder's dev qrels beside STS-B dev, report its test qrels; the
    numbers are those of ``evaluate`` on the saved model."""
    folder = tiny_beir(tmp_path / "ir")
    out = tuner.finetune(str(tiny_model_dir), "stsb", ["stsb", str(folder)], data_dir=str(tiny_data_dir),
                         weights={"cosent": 1}, epochs=1, batch_size=8, max_seq_length=32, pooling="avg",
                         output=tmp_path / "model", device="cpu", progress=False)
    assert set(out.scores["dev"]) == set(out.scores["test"]) == {"stsb", "ir"}
    assert out.dev_score == pytest.approx((out.scores["dev"]["stsb"] + out.scores["dev"]["ir"]) / 2)
    for split in ("dev", "test"):
        table = tuner.evaluate(str(out.output), [str(folder)], split=split, device="cpu", max_seq_length=32)
        assert table.iloc[0]["score"] == pytest.approx(out.scores[split]["ir"], abs=1e-6)


def test_max_eval_examples_samples_whole_queries(tmp_path):
    from tuner.data.beir import sample_queries

    qrels = load_dataset(str(tiny_beir(tmp_path / "ir"))).splits["test"]
    sample = sample_queries(qrels, 5, seed=42)
    kept = set(sample["query_id"])
    assert len(kept) == 5
    for q in kept:  # every relevant document of a kept query is kept
        assert set(sample[sample["query_id"] == q]["corpus_id"]) == set(qrels[qrels["query_id"] == q]["corpus_id"])
    assert sample.equals(sample_queries(qrels, 5, seed=42)) and sample_queries(qrels, None, 1) is qrels


@pytest.mark.slow
def test_a_study_selects_on_a_retrieval_folders_dev_qrels(tiny_model_dir, tiny_data_dir, tmp_path):
    import optuna

    from _tiny import env_with_repo, unique, write_tpe_study
    from tuner.study import load_spec

    folder = tiny_beir(tmp_path / "ir")
    name = unique("retrieval")
    study = write_tpe_study(tmp_path, name, tiny_model_dir, tiny_data_dir, n_trials=2)
    study.write_text(study.read_text().replace('train = ["stsb"]', f'train = ["stsb"]\neval = ["stsb", "{folder}"]'))
    spec = load_spec(study)
    assert spec.metric_name == "dev spearman on stsb and ndcg@10 on ir (mean)"
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    import subprocess

    result = subprocess.run([sys.executable, "-m", "tuner", "optimize", "--study", str(study), "--storage", url,
                             "--no-artifacts"], cwd=tmp_path, env=env_with_repo(), text=True, capture_output=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    assert len(trials) == 2
    for t in trials:
        assert t.state.name == "COMPLETE", t.user_attrs.get("failure")
        dev = [t.user_attrs["scores.dev.stsb"], t.user_attrs["scores.dev.ir"]]
        assert t.value == pytest.approx(sum(dev) / 2) and "scores.test.ir" in t.user_attrs
