"""SentEval classification on frozen embeddings: logistic regression under two protocols.

* ``seed``: the original project's protocol: ``LogisticRegression(max_iter=10000)`` fit on the
  train split, accuracy on the test split.
* ``senteval``: SentEval's protocol (``InnerKFoldClassifier`` with logistic regression, as its
  MR/CR/MPQA/SUBJ tasks run it with ``kfold=10``; Conneau & Kiela 2018), see :func:`senteval_cv`:
  an exact Newton solver for the L2-regularised logistic regression on each fold.

Every classification result names its protocol.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tuner.errors import TunerError
from tuner.evaluation._encode import encode
from tuner.models import Encoder

CLASSIFICATION_PROTOCOLS = ("seed", "senteval")
#: SentEval's grid of the inverse L2 strength C for sklearn's LogisticRegression: 2**-2 .. 2**3.
SENTEVAL_CS = [2.0**t for t in range(-2, 4)]
#: SentEval's fold seed (``StratifiedKFold(..., random_state=1111)``, outer and inner).
SENTEVAL_SEED = 1111


def logistic_regression_seed(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                             seed: int = 42) -> float:
    """The original project's protocol: LogisticRegression(max_iter=10000), accuracy on test."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=10000, random_state=seed)
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def senteval_order(sentences: Sequence[str], labels: Sequence[int]) -> np.ndarray:
    """Row order SentEval feeds to its classifier: stable sort by (number of tokens, label).

    SentEval's ``BinaryClassifierEval`` sorts the (pos + neg) samples by ``(len(tokens), label)``
    "to reduce padding" before embedding them, and its folds are drawn over that order; the
    tokens are the whitespace-split words of each line. Passing rows in file order (positives
    first, as in ``all.tsv``) and reordering them with this index reproduces SentEval's folds.
    """
    lengths = np.fromiter((len(str(t).split()) for t in sentences), dtype=np.int64, count=len(sentences))
    return np.lexsort((np.asarray(labels), lengths))  # last key is the primary one; lexsort is stable


def _lr_loss(z: np.ndarray, t: np.ndarray, c: float, beta: np.ndarray) -> float:
    """``0.5 |w|^2 + C sum(log(1 + e^z) - t z)`` for margins ``z = Xa beta`` (labels t in {0, 1})."""
    return float(0.5 * beta[:-1] @ beta[:-1] + c * np.sum(np.logaddexp(0.0, z) - t * z))


def _hessian_data(xa32: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``Xa^T diag(p(1-p)) Xa`` at margins ``z``, in float32 (only a Newton/chord matrix, never the optimum)."""
    from scipy.special import expit

    p = expit(z)
    s = (p * (1.0 - p)).astype(np.float32)
    return ((xa32.T * s) @ xa32).astype(np.float64)


def _newton_lr(xa: np.ndarray, xa32: np.ndarray, t: np.ndarray, c: float, beta: np.ndarray, *,
               data_hessian: "np.ndarray | None" = None, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Minimise ``0.5 |w|^2 + C sum log(1 + exp(-y (x.w + b)))`` (sklearn's L2 logistic regression,
    intercept not penalised) from ``beta = [w, b]``; ``xa`` is x with a column of ones appended.

    Damped Newton: the gradient is exact (float64); the matrix comes from ``data_hessian`` when
    given (a chord step: kept while each step is at most half the previous one; a chord step costs
    about 1% of a fresh matrix) and is recomputed at
    the current point otherwise. It stops when the largest step is below ``tol``, so the result
    is the unique optimum to ~1e-10 whichever matrices were used on the way.
    """
    from scipy.linalg import cho_factor, cho_solve
    from scipy.special import expit

    d = xa.shape[1] - 1
    eye = np.arange(d)

    def factorise(data: np.ndarray):
        h = c * data
        h[eye, eye] += 1.0
        return cho_factor(h, overwrite_a=True, check_finite=False)

    factor = None if data_hessian is None else factorise(data_hessian)
    z = xa @ beta
    f = _lr_loss(z, t, c, beta)
    last = np.inf  # size of the previous step
    for _ in range(max_iter):
        g = c * (xa.T @ (expit(z) - t))
        g[:-1] += beta[:-1]
        step = None
        if factor is not None:
            step = cho_solve(factor, g, check_finite=False)
            size = np.abs(step).max()
            if size < tol:  # converged: done without another matrix
                beta = beta - step
                break
            if size > 0.5 * last:
                factor = step = None  # the kept matrix no longer pays: Newton at the current point
        if factor is None:
            factor = factorise(_hessian_data(xa32, z))
            step = cho_solve(factor, g, check_finite=False)
        last = np.abs(step).max()
        decrease = float(g @ step)
        alpha = 1.0
        while True:  # Armijo backtracking: a full step nearly always passes
            new = beta - alpha * step
            z_new = xa @ new
            f_new = _lr_loss(z_new, t, c, new)
            # near the optimum the decrease is below float64's resolution of f: take the step
            if f_new <= f - 1e-4 * alpha * decrease or decrease < 1e-9 * abs(f) or alpha < 1e-8:
                break
            alpha *= 0.5
        if alpha < 1.0:
            factor = None
        beta, z, f = new, z_new, f_new
        if alpha * np.abs(step).max() < tol:
            break
    return beta


def _senteval_outer_fold(x: np.ndarray, t: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
                         inner_folds: int, cs: Sequence[float]) -> tuple[float, float, float]:
    """One outer fold of :func:`senteval_cv`: (chosen C, its rounded inner score, test accuracy %).

    The regularisation path is solved on the outer training rows first (increasing C, each fit
    warm-started from the previous one); it is also the refit for the chosen C. Each inner fit
    starts from the outer solution at the same C, with the inner training rows' exact Hessian at
    that point (outer Hessian minus the held-out block: a tenth of the cost of a fresh one).
    """
    from scipy.special import expit
    from sklearn.model_selection import StratifiedKFold

    xa = np.hstack([x[train_idx], np.ones((len(train_idx), 1))])
    xa32 = xa.astype(np.float32)
    tt = t[train_idx]
    inner = [(xa[a], xa32[a], tt[a], b, xa32[b], xa[b], tt[b] == 1) for a, b in
             StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=SENTEVAL_SEED).split(xa, tt)]
    beta = np.zeros(xa.shape[1])
    full = None
    scores, path = [], []
    for c in cs:
        beta = _newton_lr(xa, xa32, tt, c, beta, data_hessian=full)
        path.append(beta)
        p = expit(xa @ beta)
        s = (p * (1.0 - p)).astype(np.float32)
        full = ((xa32.T * s) @ xa32).astype(np.float64)
        accs = []
        for xa_k, xa32_k, t_k, held, block32, xa_out, truth_out in inner:
            # the inner training rows' Hessian at beta = the outer one minus the held-out block's
            hk = full - ((block32.T * s[held]) @ block32).astype(np.float64)
            bk = _newton_lr(xa_k, xa32_k, t_k, c, beta.copy(), data_hessian=hk)
            accs.append(float(np.mean((xa_out @ bk > 0) == truth_out)))
        scores.append(round(100 * float(np.mean(accs)), 2))
    best = int(np.argmax(scores))  # first maximum: the smallest C among (rounded) ties, as SentEval
    xt = np.hstack([x[test_idx], np.ones((len(test_idx), 1))])
    acc = float(np.mean((xt @ path[best] > 0) == (t[test_idx] == 1)))
    return float(cs[best]), scores[best], round(100 * acc, 2)


def _one_thread_fold(*args) -> tuple[float, float, float]:
    """:func:`_senteval_outer_fold` with BLAS held to one thread: its matrices are small (a few
    thousand x 385), where extra BLAS threads mostly spin; parallelism comes from ``n_jobs``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _senteval_outer_fold(*args)


def senteval_cv(x: np.ndarray, y: np.ndarray, *, sentences: "Sequence[str] | None" = None, folds: int = 10,
                inner_folds: "int | None" = None, cs: Sequence[float] = tuple(SENTEVAL_CS),
                n_jobs: int = 1) -> dict:
    """SentEval's ``InnerKFoldClassifier`` with logistic regression, exactly; returns its figures.

    SentEval (facebookresearch/SentEval, ``senteval/tools/validation.py``; MR/CR/MPQA/SUBJ run it
    with ``kfold=10``):

    * outer ``StratifiedKFold(n_splits=folds, shuffle=True, random_state=1111)``; in each outer
      fold an inner ``StratifiedKFold`` with the same k and seed over the outer training rows;
    * for each C in 2**-2 .. 2**3: the mean inner accuracy in percent, rounded to 2 decimals; the
      first C with the highest rounded score wins (ties go to the smaller C);
    * ``LogisticRegression(C)`` refit on the whole outer training part, test accuracy in percent
      rounded to 2 decimals; the result is the mean over outer folds, rounded to 2 decimals
      (``devacc`` likewise from the chosen inner scores).

    ``sentences``, when given, puts the rows in SentEval's order first (:func:`senteval_order`),
    which decides the folds. The classifier is sklearn's L2 logistic regression with an
    unpenalised intercept (the objective ``LogisticRegression(C=C)`` minimises), solved to its
    optimum (steps < 1e-10) by a warm-started Newton path instead of lbfgs: SentEval's call uses
    sklearn's default tolerance, so its numbers can differ from the optimum's in the last digit
    when lbfgs stops early (``bench/senteval_eval.py --literal`` measures that).
    ``inner_folds`` defaults to ``folds``. ``n_jobs > 1`` runs outer folds in parallel (joblib).
    Returns ``{"accuracy" (fraction), "acc", "devacc" (percent, SentEval's rounding), "C": [per
    fold], "fold_acc": [per fold], "folds", "inner_folds", "n"}``.
    """
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y):
        raise TunerError(f"senteval_cv needs x [n, d] and y [n], got {x.shape} and {y.shape}")
    classes = np.unique(y)
    if len(classes) != 2:
        raise TunerError(f"SentEval's CV here is binary; got {len(classes)} label values: "
                         f"{', '.join(map(str, classes[:5]))}")
    if sentences is not None:
        order = senteval_order(sentences, y)
        x, y = x[order], y[order]
    t = (y == classes[1]).astype(np.float64)  # sklearn: classes_[1] is the positive class
    inner_folds = folds if inner_folds is None else int(inner_folds)
    outer = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=SENTEVAL_SEED).split(x, y))
    if n_jobs != 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(delayed(_one_thread_fold)(x, t, tr, te, inner_folds, list(cs))
                                          for tr, te in outer)
    else:
        results = [_one_thread_fold(x, t, tr, te, inner_folds, list(cs)) for tr, te in outer]
    chosen = [r[0] for r in results]
    dev = [r[1] for r in results]
    test = [r[2] for r in results]
    acc = round(float(np.mean(test)), 2)
    return {"accuracy": acc / 100.0, "acc": acc, "devacc": round(float(np.mean(dev)), 2), "C": chosen,
            "fold_acc": test, "folds": folds, "inner_folds": inner_folds, "n": int(len(y))}


def logistic_regression_senteval(x: np.ndarray, y: np.ndarray, seed: int = SENTEVAL_SEED, folds: int = 10,
                                 inner_folds: "int | None" = None, sentences: "Sequence[str] | None" = None,
                                 n_jobs: int = 1) -> float:
    """SentEval's protocol (:func:`senteval_cv`); the test accuracy as a fraction (e.g. 0.8537).

    ``seed`` is kept for compatibility: SentEval's folds always use 1111 and the solver is
    deterministic, so any other value is rejected rather than silently ignored.
    """
    if int(seed) != SENTEVAL_SEED:
        raise TunerError(f"SentEval's folds use seed {SENTEVAL_SEED}; got seed={seed}")
    return senteval_cv(x, y, sentences=sentences, folds=folds, inner_folds=inner_folds, n_jobs=n_jobs)["accuracy"]


def evaluate_classification(encoder: Encoder, test: pd.DataFrame, train: "pd.DataFrame | None" = None,
                            protocol: str = "senteval", batch_size: int = 64, max_seq_length: int = 128,
                            seed: int = 42) -> dict[str, float]:
    """Accuracy of logistic regression on frozen embeddings under ``protocol``."""
    if protocol not in CLASSIFICATION_PROTOCOLS:
        raise TunerError(f"unknown classification protocol '{protocol}'; use one of {', '.join(CLASSIFICATION_PROTOCOLS)}")
    if protocol == "seed":
        if train is None:
            raise TunerError("the 'seed' classification protocol needs a train split to fit the classifier")
        texts = train["sentence"].astype(str).tolist() + test["sentence"].astype(str).tolist()
        emb = encode(encoder, texts, batch_size, max_seq_length)
        acc = logistic_regression_seed(emb[:len(train)], train["label"].to_numpy(), emb[len(train):],
                                       test["label"].to_numpy(), seed=seed)
        return {"accuracy": acc, "n": len(test)}
    texts = test["sentence"].astype(str).tolist()
    emb = encode(encoder, texts, batch_size, max_seq_length)
    result = senteval_cv(emb, test["label"].to_numpy(), sentences=texts)
    return {"accuracy": result["accuracy"], "n": len(test), "devacc": result["devacc"] / 100.0}


def evaluate_classification_splits(encoder: Encoder, frames: "dict[str, pd.DataFrame]", train: pd.DataFrame,
                                   batch_size: int = 64, max_seq_length: int = 128,
                                   seed: int = 42, *, return_items: bool = False) -> dict[str, dict[str, float]]:
    """The ``seed`` protocol on several splits (e.g. dev and test) that share one train split.

    ``return_items`` adds ``"correct"`` per frame: 1/0 per row, whether the logistic regression
    got it right (its mean is the accuracy); the classifier is then fit once for all frames.

    Same result as ``evaluate_classification(encoder, frame, train, protocol="seed")`` per frame,
    but the train split is encoded once instead of once per frame (it is usually the largest
    part: MR's standard train split is 6.7k of its 10.7k sentences). Returns ``{name: result}``.
    """
    train_texts = train["sentence"].astype(str).tolist()
    names = list(frames)
    texts = list(train_texts)
    bounds = []
    for name in names:
        part = frames[name]["sentence"].astype(str).tolist()
        bounds.append((len(texts), len(texts) + len(part)))
        texts.extend(part)
    emb = encode(encoder, texts, batch_size, max_seq_length)
    train_x, train_y = emb[:len(train_texts)], train["label"].to_numpy()
    out = {}
    if return_items:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=10000, random_state=seed).fit(train_x, train_y)
        for name, (lo, hi) in zip(names, bounds):
            correct = (clf.predict(emb[lo:hi]) == frames[name]["label"].to_numpy()).astype(np.int8)
            out[name] = {"accuracy": float(correct.mean()), "n": len(frames[name]), "correct": correct}
        return out
    for name, (lo, hi) in zip(names, bounds):
        frame = frames[name]
        out[name] = {"accuracy": logistic_regression_seed(train_x, train_y, emb[lo:hi], frame["label"].to_numpy(),
                                                          seed=seed), "n": len(frame)}
    return out
