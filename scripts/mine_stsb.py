"""Hard negatives for STS-B's near-paraphrases, mined with all-MiniLM-L6-v2 (issue #24, docs/data.md).

STS-B train pairs with a gold score >= 4 ("the two sentences are (mostly) equivalent") become
(anchor = sentence1, positive = sentence2) pairs; every distinct sentence2 of them is the corpus.
Settings: 3 negatives per pair, the top 3 of the ranks [0, 30) whose cosine is at least 5 % of the
positive's below it (``relative_margin = 0.05``, NV-Retriever's TopK-PercPos 95 %), sampling ``top``.
The triplets go to ``--out`` (default under /tmp: data is not copied into the repository); the record
(counts, settings, cosine summary, wall seconds) to docs/results/mining/stsb-mined.json.

    taskset -c 0 python scripts/mine_stsb.py [--out /tmp/stsb-mined.parquet] [--data-dir ../shared/data]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd

import tuner
from tuner.data import load_dataset
from tuner.jsonsafe import dumps

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "results" / "mining" / "stsb-mined.json"
MIN_SCORE = 4.0
SETTINGS = {"num_negatives": 3, "range_min": 0, "range_max": 30, "relative_margin": 0.05, "sampling": "top"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/stsb-mined.parquet"), help="the triplets (not in the repo)")
    ap.add_argument("--data-dir", default=None, help="the shared/data folder (default: $TUNER_DATA_DIR, ../shared/data)")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--record", type=Path, default=RECORD)
    args = ap.parse_args()
    train = load_dataset("stsb", data_dir=args.data_dir).splits["train"]
    keep = train[train["score"].astype(float) >= MIN_SCORE]
    pairs = pd.DataFrame({"anchor": keep["sentence1"].tolist(), "positive": keep["sentence2"].tolist()})
    start = time.perf_counter()
    mined = tuner.mine(args.model, pairs, args.out, cache=False, device="cpu", **SETTINGS)
    wall = time.perf_counter() - start
    out = pd.read_parquet(args.out)
    record = {
        "what": f"STS-B train pairs with score >= {MIN_SCORE:g} as (anchor=sentence1, positive=sentence2), hard "
                "negatives mined from their positives",
        "command": "taskset -c 0 python scripts/mine_stsb.py",
        "model": args.model, "settings": mined.settings.to_dict(), "stsb_train_rows": int(len(train)),
        "rows_written": int(len(out)), "columns": list(out.columns), **mined.stats,
        "wall_s": round(wall, 1), "device": "cpu (1 core, taskset -c 0)", "python": platform.python_version(),
        "examples": out.head(3).to_dict(orient="records"),
    }
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(dumps(record, indent=2) + "\n")
    print(dumps({k: v for k, v in record.items() if k != "examples"}, indent=2))


if __name__ == "__main__":
    main()
