"""Build an offline retrieval set in the BEIR layout from the SNLI dev and test pairs in ../shared/data.

    python scripts/snli_retrieval.py --out runs/snli-retrieval [--data-dir ../shared/data]

How it is made (deterministic; no sampling):

* corpus: every distinct hypothesis text of SNLI dev and test (one document per text; ids ``d0``,
  ``d1``, ... in first-seen order, dev before test);
* queries: every distinct premise, per split (``dev-q0``, ... and ``test-q0``, ...);
* qrels/{dev,test}.tsv: a premise's *entailed* hypotheses are relevant (score 1). Its neutral and
  contradicting hypotheses stay in the corpus as hard negatives: they share the premise's words.

The task: given a premise, find the sentences it entails among ~19,000 hypotheses. Premises
without an entailed hypothesis are not queries. Prints the sizes as JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_pairs(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(p, h, label) for p, h, label in rows[1:]]


def build(data_dir: Path, out: Path) -> dict:
    """Write the BEIR folder ``out`` from ``data_dir``/nli/snli/{dev,test}.tsv; returns its sizes."""
    pairs = {split: read_pairs(data_dir / "nli" / "snli" / f"{split}.tsv") for split in ("dev", "test")}
    doc_id: dict[str, str] = {}
    for split in ("dev", "test"):
        for _, hypothesis, _ in pairs[split]:
            doc_id.setdefault(hypothesis, f"d{len(doc_id)}")
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for text, key in doc_id.items():
            handle.write(json.dumps({"_id": key, "title": "", "text": text}) + "\n")
    sizes = {"corpus": len(doc_id)}
    with (out / "queries.jsonl").open("w", encoding="utf-8") as queries:
        for split in ("dev", "test"):
            query_id: dict[str, str] = {}
            relevant: dict[str, list[str]] = {}
            for premise, hypothesis, label in pairs[split]:
                if label == "entailment":
                    key = query_id.setdefault(premise, f"{split}-q{len(query_id)}")
                    if doc_id[hypothesis] not in relevant.setdefault(key, []):
                        relevant[key].append(doc_id[hypothesis])
            for premise, key in query_id.items():
                queries.write(json.dumps({"_id": key, "text": premise}) + "\n")
            with (out / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as qrels:
                qrels.write("query-id\tcorpus-id\tscore\n")
                for key, docs in relevant.items():
                    for doc in docs:
                        qrels.write(f"{key}\t{doc}\t1\n")
            sizes[split] = {"queries": len(query_id), "relevant_pairs": sum(len(d) for d in relevant.values())}
    return sizes


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder to write (corpus.jsonl, queries.jsonl, qrels/)")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("TUNER_DATA_DIR") or REPO.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    if not (args.data_dir / "nli" / "snli" / "dev.tsv").is_file():
        print(f"error: no nli/snli/dev.tsv under {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2
    print(json.dumps(build(args.data_dir, args.out), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
