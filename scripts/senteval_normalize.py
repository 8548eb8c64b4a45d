"""SentEval zero-shot of all-MiniLM-L6-v2 with and without the model's own Normalize module (issue #23).

all-MiniLM-L6-v2 is Transformer -> mean Pooling -> Normalize. Before tuner applied the modules after
the pooling (:mod:`tuner.models._post`) it scored SentEval on the un-normalised mean; cosine scores do
not care, the logistic regression does. For each of MR, CR, MPQA and SUBJ this scores, with SentEval's
10-fold CV over the whole file (``tuner.engine.evaluate_model``, ``protocol=None``):

* ``with_normalize``: the model as loaded (its Normalize module applied; what tuner does now);
* ``without_normalize``: the same encoder with its post-pooling modules removed (what tuner did).

One JSON record, written after each set (``--resume`` skips sets already there)::

    nice -n 10 python scripts/senteval_normalize.py            # -> docs/results/senteval-normalize.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from torch import nn  # noqa: E402

from tuner.engine._run import evaluate_model  # noqa: E402
from tuner.jsonsafe import dumps  # noqa: E402
from tuner.models import load_encoder  # noqa: E402

SETS = ("mr", "cr", "mpqa", "subj")
OUT = REPO / "docs" / "results" / "senteval-normalize.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    record = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {
        "model": "all-MiniLM-L6-v2", "protocol": "SentEval 10-fold CV over the whole file (tuner.evaluation.senteval_cv)",
        "what": "test accuracy (%) of logistic regression on frozen embeddings",
        "versions": {"python": platform.python_version()}, "script": "scripts/senteval_normalize.py", "sets": {}}
    encoder = load_encoder("all-MiniLM-L6-v2", device="cpu")
    modules = list(encoder.post)
    record["post_modules"] = [type(m).__name__ for m in modules]
    for name in SETS:
        if name in record["sets"]:
            continue
        row = {}
        for variant, post in (("with_normalize", modules), ("without_normalize", [])):
            encoder.post = nn.Sequential(*post)
            start = time.perf_counter()
            scores = evaluate_model(encoder, name, data_dir=args.data_dir)
            row[variant] = round(100 * float(scores["score"].iloc[0]), 2)
            row[f"{variant}_seconds"] = round(time.perf_counter() - start, 1)
            row["n"] = int(scores["n"].iloc[0])
        row["diff"] = round(row["with_normalize"] - row["without_normalize"], 2)
        record["sets"][name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dumps(record, indent=2))
        print(name, row, flush=True)


if __name__ == "__main__":
    main()
