"""``tuner studies``: list the study files (``studies/*.toml``) and what each runs."""
from __future__ import annotations

import argparse

from tuner.commands.common import print_json
from tuner.errors import TunerError
from tuner.study import list_study_files, load_spec, studies_dirs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("studies", help="list the study files in studies/",
                       description="List the study files that optimize --study NAME accepts (studies/*.toml, "
                                   "$TUNER_STUDIES_DIR), with their task, sampler and size. Invalid files are "
                                   "listed with their error.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for path in list_study_files():
        try:
            spec = load_spec(path)
            rows.append({**spec.summary(), "path": str(path), "error": None})
        except TunerError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
    if args.json:
        print_json({"folders": [str(d) for d in studies_dirs()], "studies": rows})
        return 0
    if not rows:
        print(f"no study files in {', '.join(str(d) for d in studies_dirs())}")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["error"]:
            print(f"{r['name']:<{width}}  INVALID: {r['error']}")
            continue
        size = f"{r['cells']} cells" if r["sampler"] == "grid" else f"{r['n_trials']} trials"
        print(f"{r['name']:<{width}}  {r['task']:<14} {r['sampler']:<6} {size:<10} {r['description']}")
    return 0
