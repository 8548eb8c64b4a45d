"""``tuner evaluate``: score a model (zero-shot or fine-tuned) on built-in or custom datasets."""
from __future__ import annotations

import argparse

from tuner.commands.common import add_data_dir, format_table, positive_int, print_json
from tuner.data.splits import PROTOCOLS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model on STS / SentEval / retrieval datasets",
                       description="Score a model on STS (Spearman of cosine similarity), SentEval classification "
                                   "(logistic regression on frozen embeddings) or retrieval (NDCG@10 of exact cosine "
                                   "search over a BEIR folder's corpus). By default the full official split is scored "
                                   "(the whole file for sets that only have a test file).")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2",
                   help="Hugging Face id or local folder (default: all-MiniLM-L6-v2, bundled offline)")
    p.add_argument("--datasets", required=True,
                   help="comma-separated built-in names (sts12..sts16, stsb, sickr, mr, cr, mpqa, subj), file paths "
                        "or retrieval folders in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--pooling", default=None, help="cls, cls_avg, avg, max, last or a token index (default: the model's)")
    p.add_argument("--prompt", default=None,
                   help="template every sentence is put in, {text} where it goes (e.g. PromptEOL: "
                        "'This sentence : \"{text}\" means in one word:\"'); default: the prompt a saved model "
                        "was trained with; '' for none")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--protocol", default=None, choices=PROTOCOLS,
                   help="score a protocol split instead of the full official split (disjoint: no test/dev "
                        "sentence in any training row; see 'tuner splits')")
    p.add_argument("--classification-protocol", default=None, choices=("seed", "senteval"),
                   help="seed: LR fit on the protocol's train split; senteval: SentEval's 10-fold CV with inner 10-fold "
                        "choice of C (default without --protocol)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--max-seq-length", type=positive_int, default=128)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuner.engine._run import evaluate_model

    table = evaluate_model(args.model, args.datasets, pooling=args.pooling, split=args.split, protocol=args.protocol,
                           classification_protocol=args.classification_protocol, data_dir=args.data_dir,
                           batch_size=args.batch_size, max_seq_length=args.max_seq_length, device=args.device,
                           prompt=args.prompt)
    if args.json:
        print_json({"model": args.model, **({"prompt": args.prompt} if args.prompt else {}),
                    "results": table.to_dict(orient="records"),
                    "scores": dict(zip(table["dataset"], table["score"]))})
    else:
        print(format_table(table, ["dataset", "split", "metric", "score", "n", "protocol", "pooling"]))
    return 0
