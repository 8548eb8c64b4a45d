"""Does the answer transfer? Confirmed systems of different confirm studies on the same test file,
paired over seeds x items (issue #23): e.g. STS-B's confirmed answer trained and scored on SICK-R
(``confirm --on sickr``) against SICK-R's own confirmed answer and against the recipe there.

    python scripts/cross_confirm.py --dataset sickr \\
        --a sqlite:///docs/results/stsb-full/study.db stsb-search-confirm-on-sickr trial-15 \\
        --b sqlite:///docs/results/sickr-full/study.db sickr-search-confirm trial-18 \\
        --b sqlite:///docs/results/sickr-full/study.db sickr-search-confirm st-example \\
        --out docs/results/cross-confirm/stsb-answer-on-sickr

Each side is (storage, confirm study, system label); ``--b`` may be given several times. Writes
OUT.json (every system's dev/test mean, std and 95% interval over seeds; each paired difference
A - B with its 95% interval and two-sided p from the two-stage bootstrap of
``tuner.exporter.confirm``, Holm-adjusted over the ``--b`` comparisons) and OUT.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from tuner.exporter.confirm import compare_across, format_block, format_p
from tuner.stats import ALPHA, holm
from tuner.jsonsafe import dumps


def load(url: str, study: str) -> tuple[list, dict]:
    loaded = optuna.load_study(study_name=study, storage=url)
    return loaded.get_trials(deepcopy=False), dict(loaded.user_attrs)


def markdown(result: dict) -> str:
    lines = [f"{result['metric']} x100 on {', '.join(result['datasets'])}: mean [95% t-interval] over seeds", "",
             "| side | confirm study | system | seeds | dev | test |", "| --- | --- | --- | --- | --- | --- |"]
    rows = [("A", result["a"], result["sides"][0])]
    rows += [(f"B{i + 1}", entry["b"], side) for i, (entry, side) in enumerate(zip(result["against"], result["sides"][1:]))]
    for name, entry, side in rows:
        lines.append(f"| {name} | `{side['study']}` ({side['storage'].rsplit('/', 1)[-1]}) | {side['label']} | "
                     f"{', '.join(map(str, entry['seeds']))} | {format_block(entry['dev'])} | {format_block(entry['test'])} |")
    lines.append("")
    for i, entry in enumerate(result["against"]):
        c = entry["comparison"]
        if c is None:
            lines.append(f"- A - B{i + 1}: not tested (no common seed with per-item outputs)")
            continue
        n, family = c["n_resamples"], len(result["against"])
        verdict = "significant" if c["significant"] else "not significant: a tie"
        lines.append(f"- A - B{i + 1} on test: {100 * c['difference']:+.2f} [{100 * c['ci'][0]:+.2f}, "
                     f"{100 * c['ci'][1]:+.2f}], p {format_p(c['p'], n)}, Holm {format_p(c['p_holm'], n, family)} over "
                     f"{c['seeds']} seeds x {sum(c['items'].values())} test items: {verdict}")
    lines += ["", f"Two-stage paired bootstrap (seeds and test items), two-sided; Holm over the {len(result['against'])} "
                  "comparisons; alpha 0.05."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", nargs=3, required=True, metavar=("STORAGE", "STUDY", "LABEL"))
    ap.add_argument("--b", nargs=3, required=True, action="append", metavar=("STORAGE", "STUDY", "LABEL"),
                    help="a system to compare A with (repeat for several: Holm over them)")
    ap.add_argument("--dataset", required=True, help="the test file every side was scored on (e.g. sickr)")
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    sides = [args.a, *args.b]
    a = (*load(*args.a[:2]), args.a[2])
    against = []
    try:
        for url, study, label in args.b:
            result = compare_across(a, (*load(url, study), label), [args.dataset])
            against.append({"b": result["b"], "comparison": result["comparison"]})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tested = [e["comparison"] for e in against if e["comparison"] is not None]
    for c, adjusted in zip(tested, holm([c["p"] for c in tested])):
        c["p_holm"], c["significant"] = adjusted, adjusted is not None and adjusted < ALPHA
    report = {"a": result["a"], "metric": result["metric"], "datasets": result["datasets"], "against": against,
              "alpha": ALPHA, "sides": [{"storage": url, "study": study, "label": label} for url, study, label in sides]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(dumps(report, indent=1) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
