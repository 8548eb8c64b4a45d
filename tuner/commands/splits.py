"""``tuner splits``: split sizes of a protocol and how much of dev/test the training rows contain."""
from __future__ import annotations

import argparse

from tuner.commands.common import add_data_dir, print_json
from tuner.data.splits import PROTOCOLS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("splits", help="split sizes and train/test sentence overlap of a protocol",
                       description="Print the train/dev/test sizes of a dataset under a protocol and, for dev and "
                                   "test, the share of STS pairs with at least one / both sentences in a training "
                                   "pair and identical to a training pair (classification: rows whose sentence is "
                                   "in train).")
    p.add_argument("--dataset", required=True,
                   help="built-in name (sts12..sts16, stsb, sickr, mr, cr, mpqa, subj), a file path, "
                        "or several comma-separated")
    p.add_argument("--protocol", default="standard", choices=PROTOCOLS, help="default: standard")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42, the seed protocol's)")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _pct(value: "float | None") -> str:
    return "" if value is None else f"{100 * value:.1f}"


def run(args: argparse.Namespace) -> int:
    from tuner.data.overlap import overlap_report

    names = [s.strip() for s in str(args.dataset).split(",") if s.strip()]
    reports = [overlap_report(name, args.protocol, args.seed, data_dir=args.data_dir) for name in names]
    if args.json:
        print_json(reports[0] if len(reports) == 1 else reports)
        return 0
    header = ("dataset", "protocol", "train", "dev", "test", "split", "any%", "both%", "pair%")
    rows = []
    for r in reports:
        for split in ("dev", "test"):
            part = r.get(split, {})
            if r["task"] == "classification":
                shares = (_pct(part.get("sentence_in_train")), "", "")
            else:
                shares = (_pct(part.get("any_in_train")), _pct(part.get("both_in_train")),
                          _pct(part.get("pair_in_train")))
            rows.append((r["dataset"], r["protocol"], str(r["sizes"]["train"]), str(r["sizes"]["dev"]),
                         str(r["sizes"]["test"]), split, *shares))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print("any%: pairs with at least one sentence in a training pair (classification: rows whose sentence is in "
          "train); both%: both sentences; pair%: the same pair (either order) is a training pair")
    return 0
