"""SentEval's classification protocol (tuner.evaluation.senteval_cv) against a reference nested CV
written with scikit-learn: GridSearchCV (inner folds, C grid) inside cross_validate (outer folds)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

from tuner.errors import TunerError
from tuner.evaluation import SENTEVAL_CS, logistic_regression_senteval, senteval_cv, senteval_order


def fixture(n: int, d: int, seed: int, shift: float = 0.6) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two overlapping Gaussian classes (file order: label 1 first, like all.tsv) and fake sentences."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n - n // 3, dtype=int), np.zeros(n // 3, dtype=int)]
    x = rng.normal(size=(n, d)) + shift * (2 * y[:, None] - 1) * rng.uniform(0.2, 1.0, size=d)
    words = rng.integers(1, 12, size=n)
    sentences = [" ".join(f"w{j}" for j in range(k)) for k in words]
    return x, y, sentences


def reference(x: np.ndarray, y: np.ndarray, sentences: list[str]) -> dict:
    """SentEval's InnerKFoldClassifier rebuilt from sklearn parts, independent of senteval_cv.

    Rows in SentEval's order: sorted(zip(samples, labels), key=(len(tokens), label)) -- Python's
    stable sort, written out here rather than through senteval_order. Inner choice of C: the mean
    inner accuracy in percent rounded to 2 decimals, first maximum (GridSearchCV's ``refit``
    callable); LogisticRegression (sklearn's objective for C; newton-cg to a tight tolerance, so the optimum
    does not depend on the solver).
    """
    order = [i for i, _ in sorted(enumerate(zip(sentences, y)), key=lambda z: (len(z[1][0].split()), z[1][1]))]
    xs, ys = x[order], y[order]
    folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=1111)
    search = GridSearchCV(
        LogisticRegression(solver="newton-cg", tol=1e-10, max_iter=1000),
        {"C": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]},
        cv=StratifiedKFold(n_splits=10, shuffle=True, random_state=1111),
        scoring="accuracy",
        refit=lambda res: int(np.argmax(np.round(100 * res["mean_test_score"], 2))),
    )
    out = cross_validate(search, xs, ys, cv=folds, scoring="accuracy", return_estimator=True)
    fold_acc = [round(100 * s, 2) for s in out["test_score"]]
    dev = [round(100 * e.cv_results_["mean_test_score"][e.best_index_], 2) for e in out["estimator"]]
    return {"acc": round(float(np.mean(fold_acc)), 2), "fold_acc": fold_acc,
            "C": [e.best_params_["C"] for e in out["estimator"]], "devacc": round(float(np.mean(dev)), 2)}


@pytest.mark.parametrize("n, d, seed, shift", [(150, 6, 0, 0.6), (400, 24, 1, 0.2)])
def test_senteval_cv_equals_sklearn_nested_cv(n, d, seed, shift):
    x, y, sentences = fixture(n, d, seed, shift)
    ours = senteval_cv(x, y, sentences=sentences)
    ref = reference(x, y, sentences)
    assert ours["acc"] == ref["acc"]
    assert ours["fold_acc"] == ref["fold_acc"]
    assert ours["C"] == ref["C"]
    assert ours["devacc"] == ref["devacc"]
    assert ours["accuracy"] == pytest.approx(ref["acc"] / 100)
    assert (ours["folds"], ours["inner_folds"], ours["n"]) == (10, 10, n)


def test_senteval_constants():
    assert SENTEVAL_CS == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


def test_senteval_order_is_stable_sort_by_length_then_label():
    sentences = ["a b c", "a", "b", "a b", "c", ""]
    labels = [1, 1, 0, 1, 1, 0]
    assert senteval_order(sentences, labels).tolist() == [5, 2, 1, 4, 3, 0]


def test_folds_follow_the_row_order():
    """The order decides the folds: without SentEval's order the per-fold results change."""
    x, y, sentences = fixture(200, 8, 3)
    a = senteval_cv(x, y, sentences=sentences)
    b = senteval_cv(x, y)
    assert a["fold_acc"] != b["fold_acc"]


def test_parallel_equals_serial_and_wrapper():
    x, y, sentences = fixture(160, 5, 4)
    serial = senteval_cv(x, y, sentences=sentences)
    assert senteval_cv(x, y, sentences=sentences, n_jobs=2) == serial
    assert logistic_regression_senteval(x, y, sentences=sentences) == serial["accuracy"]


def test_bad_input():
    x, y, _ = fixture(60, 3, 5)
    with pytest.raises(TunerError, match="binary"):
        senteval_cv(x, np.arange(60) % 3)
    with pytest.raises(TunerError, match="1111"):
        logistic_regression_senteval(x, y, seed=42)
    with pytest.raises(TunerError):
        senteval_cv(x[:10], y)
