"""Does the answer transfer? Two confirmed systems on the same test file, paired over seeds x items
(issue #23): e.g. STS-B's confirmed answer trained and scored on SICK-R (``confirm --on sickr``)
against SICK-R's own confirmed answer, and the other way round.

    python scripts/cross_confirm.py --dataset sickr \\
        --a sqlite:///docs/results/stsb-full/study.db stsb-search-confirm-on-sickr trial-15 \\
        --b sqlite:///docs/results/sickr-full/study.db sickr-search-confirm trial-3 \\
        --out docs/results/cross-confirm/stsb-answer-on-sickr

Each side is (storage, confirm study, system label). Writes OUT.json (both systems' dev/test mean,
std and 95% interval over seeds; the paired difference A - B with its 95% interval and two-sided p
from the two-stage bootstrap of ``tuner.exporter.confirm``) and OUT.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from tuner.exporter.confirm import compare_across
from tuner.jsonsafe import dumps


def load(url: str, study: str) -> tuple[list, dict]:
    loaded = optuna.load_study(study_name=study, storage=url)
    return loaded.get_trials(deepcopy=False), dict(loaded.user_attrs)


def markdown(result: dict, sides: list[list[str]]) -> str:
    def cell(block: dict) -> str:
        if block["mean"] is None:
            return "-"
        ci = f" [{100 * block['ci'][0]:.2f}, {100 * block['ci'][1]:.2f}]" if block["ci"] else ""
        return f"{100 * block['mean']:.2f}{ci}"

    lines = [f"{result['metric']} x100 on {', '.join(result['datasets'])}: mean [95% t-interval] over seeds", "",
             "| side | confirm study | system | seeds | dev | test |", "| --- | --- | --- | --- | --- | --- |"]
    for name, entry, (url, study, label) in zip("AB", (result["a"], result["b"]), sides):
        lines.append(f"| {name} | `{study}` ({url.rsplit('/', 1)[-1]}) | {label} | {', '.join(map(str, entry['seeds']))} | "
                     f"{cell(entry['dev'])} | {cell(entry['test'])} |")
    c = result["comparison"]
    lines.append("")
    if c is None:
        lines.append("A - B: not tested (no common seed with per-item outputs)")
    else:
        verdict = "significant" if c["p"] < 0.05 else "not significant: a tie"
        lines.append(f"A - B on test: {100 * c['difference']:+.2f} [{100 * c['ci'][0]:+.2f}, {100 * c['ci'][1]:+.2f}], "
                     f"p {c['p']:.3g} over {c['seeds']} seeds x {sum(c['items'].values())} test items "
                     f"(two-stage paired bootstrap, {c['n_resamples']} resamples): {verdict}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", nargs=3, required=True, metavar=("STORAGE", "STUDY", "LABEL"))
    ap.add_argument("--b", nargs=3, required=True, metavar=("STORAGE", "STUDY", "LABEL"))
    ap.add_argument("--dataset", required=True, help="the test file both sides were scored on (e.g. sickr)")
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    sides = [args.a, args.b]
    loaded = [(*load(url, study), label) for url, study, label in sides]
    try:
        result = compare_across(loaded[0], loaded[1], [args.dataset])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["sides"] = [{"storage": url, "study": study, "label": label} for url, study, label in sides]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(dumps(result, indent=1) + "\n")
    text = markdown(result, sides)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
