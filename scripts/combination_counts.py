"""Which loss combinations a study tried and which it favoured.

    python scripts/combination_counts.py --study sts-cpu --storage sqlite:///runs/sts-cpu-onoff.db \
        --out docs/results/sts-cpu/combinations.json

For every combination (the losses that were on, cos-MSE included): how many trials ran it in the
random start-up phase and in the sampler-guided phase, how many completed or were pruned, and its
best and mean dev score; plus every trial in order. Prints a Markdown table and writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--startup", type=int, default=None,
                    help="trials drawn at random before TPE takes over (default: the study file's rule)")
    args = ap.parse_args()

    import optuna

    from tuner.losses.registry import row_sort_key, row_title
    from tuner.study import load_spec

    spec = load_spec(args.study)
    startup = args.startup if args.startup is not None else max(1, min(10, (spec.n_trials or 10) // 4))
    study = optuna.load_study(study_name=spec.name, storage=args.storage)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows: dict[str, dict] = {}
    listing = []
    for t in trials:
        loss = t.user_attrs.get("loss") or "none (every loss drawn off)"
        state = t.state.name
        listing.append({"trial": t.number, "loss": loss, "state": state, "value": t.value,
                        "failure": t.user_attrs.get("failure")})
        if state not in ("COMPLETE", "PRUNED"):
            continue
        r = rows.setdefault(loss, {"startup": 0, "guided": 0, "complete": 0, "pruned": 0, "dev": []})
        r["startup" if t.number < startup else "guided"] += 1
        r["complete" if state == "COMPLETE" else "pruned"] += 1
        if state == "COMPLETE":
            r["dev"].append(t.value)
    table = []
    for loss in sorted(rows, key=lambda k: row_sort_key(k) if "+" in k or k.isidentifier() else (9,)):
        r = rows[loss]
        table.append({"loss": loss, "title": row_title(loss) if not loss.startswith("none") else loss,
                      "startup_trials": r["startup"], "guided_trials": r["guided"], "complete": r["complete"],
                      "pruned": r["pruned"], "best_dev": max(r["dev"]) if r["dev"] else None,
                      "mean_dev": statistics.fmean(r["dev"]) if r["dev"] else None})
    record = {"study": spec.name, "startup_trials": startup, "n_trials": len(trials),
              "states": {s: sum(1 for t in listing if t["state"] == s) for s in {t["state"] for t in listing}},
              "combinations": table, "trials": listing}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    print("| losses on | random start-up | TPE-guided | complete | pruned | best dev | mean dev |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        best = f"{r['best_dev'] * 100:.2f}" if r["best_dev"] is not None else "–"
        mean = f"{r['mean_dev'] * 100:.2f}" if r["mean_dev"] is not None else "–"
        print(f"| {r['title']} | {r['startup_trials']} | {r['guided_trials']} | {r['complete']} | {r['pruned']} "
              f"| {best} | {mean} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
