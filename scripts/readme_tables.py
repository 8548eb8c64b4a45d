"""Regenerate the result tables of README.md and docs/*.md from the committed records they report.

    python scripts/readme_tables.py            # rewrite the generated blocks of README.md and docs/*.md in place
    python scripts/readme_tables.py --check    # exit 1 naming every block that differs from its record

A generated block sits between ``<!-- generated: KIND ARG -->`` and ``<!-- end generated -->`` in
README.md or any docs/*.md page; ARG is a path relative to the repository root (wherever the page
is). Kinds:

* ``matrix DIR``: an export folder's matrix (``matrix.npy`` + ``matrix.json``) as results.md shows
  it: loss rows x datasets + Mean, x100 with 2 decimals, ``mean ± half-width of the 95% t-interval``
  where a cell has several seeds (matrix.json ``cells_detail``), bold = the exporter's rule
  (:func:`tuner.exporter.significance.below_best`: Holm over each column's comparisons with its
  best row) applied to the two-sided p-values the record holds (``cells_detail[*].vs_best``), so an
  export written before the rule had the correction follows it too; an export without p-values:
  its ``marked`` field, else the column maximum), and the exporter's Wins line (exploratory when
  every fine-tuned cell has one training seed).
* ``gains DIR``: an export's gain of every fine-tuned cell over the zero-shot row (x100) with the
  95% interval of the exporter's paired bootstrap over the test items (``cells_detail[*].vs_zero_shot``);
  bold = the interval excludes 0 (a significant gain, or a loss when negative); a line per model
  counting, per dataset, the rows that help and hurt.
* ``models DIR``: a several-model export side by side: per loss row, each model's mean over the
  datasets (x100; bold = the exporter's best mean of that model) and its gain over the model's own
  zero-shot row.
* ``include FILE``: a markdown table a committed script wrote (e.g. ``bench/hpo_efficiency.py``'s
  ``bench/results/hpo_efficiency.md``), verbatim.
* ``combinations FILE``: ``scripts/combination_counts.py``'s record (which loss combinations a study tried).
* ``rerun FILE``: ``scripts/rerun_best.py``'s record (the best trial re-run with several seeds).
* ``rerun-gain DIR``: ``scripts/rerun_best.py``'s ``DIR/best_rerun.json`` against the zero-shot reading of
  ``scripts/decoder_zero_shot.py``'s ``DIR/zero_shot_dev.json`` and ``DIR/zero_shot_test.json``: per split
  and dataset the zero-shot score, the re-run's mean over its seeds and the gain (x100, the gain rounded
  from the unrounded scores).
* ``protocols FILE``: ``scripts/compare_protocols.py``'s record (a grid's gains over zero-shot under
  the seed and the disjoint protocol, and whether the row ranking survives).
* ``overlap FILE``: ``scripts/overlap_table.py``'s record, one row per dataset: the share of test
  pairs (rows) with a sentence in the training split under each protocol.
* ``ibn-duplicates FILE``: ``scripts/ibn_duplicates.py``'s summary: per task and duplicate rule the
  STS-B dev/test Spearman over seeds (x100, mean ± std), each rule minus ``off`` paired by seed
  (mean [95% t-interval]), how often a batch held a copy, and which intervals exclude 0.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tuner.exporter.significance import below_best  # the exporter's own bold rule
from tuner.exporter.tables import best_rows as column_best
from tuner.exporter.tables import wins_line

REPO = Path(__file__).resolve().parents[1]
ZERO_SHOT = "zero_shot"
BLOCK = re.compile(r"(<!-- generated: (\S+) (\S+) -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)


def pct(value: Any) -> str:
    """A 0..1 score x100 with 2 decimals; '–' where the record has none."""
    return "–" if value is None or pd.isna(value) else f"{float(value) * 100:.2f}"


def md_table(frame: pd.DataFrame, align: list[str]) -> list[str]:
    """``frame`` as markdown rows; ``align``: one separator cell per column (``" ---: "``); empty cells read ``| |``."""
    def line(cells: Any) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"
    return [line(frame.columns), "|" + "|".join(align) + "|", *(line(row) for row in frame.to_numpy())]


def render_combinations(path: Path) -> list[str]:
    frame = pd.DataFrame(json.loads(path.read_text())["combinations"])
    shown = pd.DataFrame({
        "losses on": frame["title"], "random start-up": frame["startup_trials"].map(str),
        "TPE-guided": frame["guided_trials"].map(str), "complete": frame["complete"].map(str),
        "pruned": frame["pruned"].map(str), "best dev": frame["best_dev"].map(pct),
        "mean dev": frame["mean_dev"].map(pct)})
    return md_table(shown, [" --- "] + [" ---: "] * 6)


def render_rerun(path: Path) -> list[str]:
    record = json.loads(path.read_text())
    runs = pd.DataFrame.from_dict(record["runs"], orient="index")
    runs = runs.loc[sorted(runs.index, key=int)]
    shown = pd.DataFrame({"seed": runs.index, "dev": runs["dev"].map(pct), "test": runs["test"].map(pct),
                          "steps": runs["steps"].map(str), "wall time (loaded machine)": runs["wall_s"].map(
                              lambda s: f"{s:.0f} s")})
    summary = record["summary"]
    spread = {split: f"**{pct(summary[split]['mean'])} ± {pct(summary[split]['std'])}**" for split in ("dev", "test")}
    shown.loc[len(shown)] = ["**mean ± std**", spread["dev"], spread["test"], "", ""]
    return md_table(shown, [" ---: "] * 5)


def render_rerun_gain(folder: Path) -> list[str]:
    rerun = json.loads((folder / "best_rerun.json").read_text())
    seeds = sorted(rerun["runs"], key=int)
    lines = []
    for split in ("dev", "test"):
        zero = json.loads((folder / f"zero_shot_{split}.json").read_text())
        for variant, per_dataset in zero["results"].items():
            for dataset, z in per_dataset.items():
                after = float(np.mean([rerun["runs"][s]["scores"][split][dataset] for s in seeds]))
                lines.append({"set, split (full file)": f"{dataset} {split} (n={z['n']:,})",
                              f"zero-shot ({variant})": pct(z["spearman"]),
                              f"best trial re-run (seed {', '.join(seeds)})": pct(after),
                              "gain": f"{100 * (after - z['spearman']):+.2f}"})
    return md_table(pd.DataFrame(lines), [" --- "] + [" ---: "] * 3)


def render_overlap(path: Path) -> list[str]:
    """Per dataset and protocol: test share with any / both sentences in train / identical pair (STS), or
    with its sentence in train (classification), in % with 1 decimal; train/dev/test sizes of the disjoint split."""
    reports = json.loads(path.read_text())["reports"]
    protocols = list(dict.fromkeys(r["protocol"] for r in reports))
    table: dict[str, dict[str, str]] = {}
    for r in reports:
        t = r["test"]
        keys = ("sentence_in_train",) if r["task"] == "classification" else ("any_in_train", "both_in_train", "pair_in_train")
        cell = " / ".join(f"{100 * t[k]:.1f}" for k in keys)
        row = table.setdefault(r["dataset"], {"dataset": r["dataset"]})
        row[r["protocol"]] = cell
        if r["protocol"] == "disjoint":
            row["disjoint train / dev / test"] = " / ".join(str(r["sizes"][s]) for s in ("train", "dev", "test"))
    frame = pd.DataFrame(list(table.values()))[["dataset", *protocols, "disjoint train / dev / test"]]
    return md_table(frame, [" --- "] + [" ---: "] * (len(protocols) + 1))


def render_protocols(path: Path) -> list[str]:
    """Per dataset: zero-shot and the fine-tuned rows' mean gain (x100; rows gaining significantly) under
    each protocol, the gain that does not survive the disjoint split, the rows' rank correlation, the best rows."""
    record = json.loads(path.read_text())
    titles, n_rows = record["loss_titles"], len(record["rows"])
    lines = []
    for dataset, d in record["datasets"].items():
        side = {p: d[p] for p in ("seed", "disjoint")}
        lines.append({
            "dataset": dataset,
            **{f"{p}: zero-shot": pct(s["zero_shot"]) for p, s in side.items()},
            **{f"{p}: mean gain (rows up)": f"{100 * s['mean_gain']:+.2f} ({len(s['rows_gaining_significantly'])}/{n_rows})"
               for p, s in side.items()},
            "gain lost": f"{100 * d['gain_lost']:.2f}", "rank ρ": f"{d['rank_correlation']:.2f}",
            "best row (seed → disjoint)": f"{titles[side['seed']['best_row']]} → {titles[side['disjoint']['best_row']]}"})
    frame = pd.DataFrame(lines)[["dataset", "seed: zero-shot", "seed: mean gain (rows up)", "disjoint: zero-shot",
                                 "disjoint: mean gain (rows up)", "gain lost", "rank ρ", "best row (seed → disjoint)"]]
    mean = record["mean_gain"]
    frame.loc[len(frame)] = ["**mean**", "", f"**{100 * mean['seed']:+.2f}**", "", f"**{100 * mean['disjoint']:+.2f}**",
                             f"**{100 * (mean['seed'] - mean['disjoint']):.2f}**", "", ""]
    return md_table(frame, [" --- "] + [" ---: "] * 6 + [" --- "])


def render_ibn_duplicates(path: Path) -> list[str]:
    """Per task and rule: dev and test (x100, mean ± std over seeds), test minus ``off`` paired by seed with
    its 95% t-interval; then how often a batch held a copy of an anchor's positive, and the verdict."""
    record = json.loads(path.read_text())
    titles = {"nli": "NLI triplets (SNLI)", "stsb": "STS-B pairs"}
    lines, verdict = [], []
    for task, rules in record["results"].items():
        for rule, r in rules.items():
            spread = {s: f"{pct(r[s]['mean'])} ± {pct(r[s]['std'])}" for s in ("dev", "test")}
            paired = {}
            for split in ("dev", "test"):
                d = r.get(f"{split}_vs_off")
                paired[split] = "" if not d else f"{100 * d['mean']:+.2f} [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"
                if d and (d["ci_low"] > 0 or d["ci_high"] < 0):
                    verdict.append(f"{titles.get(task, task)} {rule} {split} ({100 * d['mean']:+.2f})")
            lines.append({"task": titles.get(task, task), "rule": f"`{rule}`", "seeds": str(r["n"]),
                          "steps": "/".join(map(str, r["steps"])), "dev": spread["dev"], "test": spread["test"],
                          "dev − off (paired)": paired["dev"], "test − off (paired)": paired["test"]})
    out = md_table(pd.DataFrame(lines), [" --- ", " --- "] + [" ---: "] * 6)
    counts = record.get("counts", {})
    for task in record["results"]:
        runs = [c for c in counts.values() if c["task"] == task]
        if runs:
            total = {k: sum(c[k] for c in runs) for k in ("anchors", "anchors_with_a_duplicate", "batches",
                                                           "batches_with_a_duplicate", "anchors_whose_text_repeats_in_the_batch")}
            share = 100 * total["anchors_with_a_duplicate"] / max(total["anchors"], 1)
            out += ["", (f"{titles.get(task, task)}, first epoch of the {len(runs)} seeds, batch {runs[0]['batch_size']}: "
                         f"{total['anchors_with_a_duplicate']} of {total['anchors']} anchors ({share:.2f}%) had a copy of "
                         f"their positive among the candidates, in {total['batches_with_a_duplicate']} of {total['batches']} "
                         f"batches; {total['anchors_whose_text_repeats_in_the_batch']} anchors shared their own text with "
                         "another anchor of the batch (not a copy under the rule).")]
    out += ["", "Paired intervals that exclude 0: " + ("; ".join(verdict) if verdict else
                                                       "none: the rules tie within the seed noise at this budget.")]
    return out


def _record_marks(detail: dict, model: str, rows: tuple, dataset: str, block_column: np.ndarray,
                  tested: bool) -> set[int]:
    """The bold rows of one column of a record: Holm over its recorded p-values, else ``marked``, else the max."""
    if not detail:
        return column_best(block_column)
    cells = {ri: detail.get((model, rows[ri], dataset), {}) for ri in range(len(rows)) if np.isfinite(block_column[ri])}
    versus = {ri: c["vs_best"] for ri, c in cells.items() if c.get("vs_best")}
    best = [ri for ri in cells if ri not in versus]
    if tested and len(best) == 1 and all(v.get("p_two_sided") is not None for v in versus.values()):
        verdict = below_best({ri: (v["difference"], v["p_two_sided"]) for ri, v in versus.items()})
        return set(best) | {ri for ri, (_, below) in verdict.items() if not below}
    return {ri for ri, c in cells.items() if c.get("marked")}


def _exploratory(meta: dict) -> bool:
    """Every fine-tuned cell of the record has one training seed (the exporter's ``significance.exploratory``)."""
    sig = meta.get("significance") or {}
    if "exploratory" in sig:
        return bool(sig["exploratory"])
    seeds = [c.get("n_seeds", 1) for c in meta.get("cells_detail") or [] if c["loss"] != ZERO_SHOT]
    return max(seeds, default=1) <= 1


def render_matrix(folder: Path) -> list[str]:
    meta = json.loads((folder / "matrix.json").read_text())
    values = np.load(folder / "matrix.npy")
    rows, datasets, titles = tuple(meta["losses"]), tuple(meta["datasets"]), meta["loss_titles"]
    detail = {(c["model"], c["loss"], c["dataset"]): c for c in meta.get("cells_detail") or []}
    tested = {(c["model"], c["dataset"]): c["tested"] for c in (meta.get("significance") or {}).get("columns", [])}
    shown = [ri for ri in range(len(rows)) if np.isfinite(values[:, ri, :]).any()]
    lines: list[str] = []
    for mi, model in enumerate(meta["models"]):
        block = values[mi]
        marked = [_record_marks(detail, model, rows, d, block[:, di], tested.get((model, d), False))
                  for di, d in enumerate(datasets)]
        with np.errstate(all="ignore"):  # the exporter's row mean: over the datasets that have a score
            counts = np.isfinite(block).sum(axis=1)
            means = np.where(counts > 0, np.nansum(block, axis=1) / np.maximum(counts, 1), np.nan)
        complete = counts == len(datasets)
        mean_best = column_best(np.where(complete, means, np.nan) if complete.any() else means)
        if len(meta["models"]) > 1:
            lines += [f"{model}:", ""]
        lines += ["| Loss | " + " | ".join(datasets) + " | Mean |", "|---|" + "---:|" * (len(datasets) + 1)]
        for ri in shown:
            cells = [titles[ri]]
            for di, dataset in enumerate(datasets):
                text = pct(block[ri, di]) if np.isfinite(block[ri, di]) else "n/a"
                cell = detail.get((model, rows[ri], dataset), {})
                if cell.get("n_seeds", 1) > 1 and cell.get("ci95"):
                    text += f" ± {pct((cell['ci95'][1] - cell['ci95'][0]) / 2)}"
                cells.append(f"**{text}**" if ri in marked[di] else text)
            mean = pct(means[ri]) if np.isfinite(means[ri]) else "n/a"
            mean = f"**{mean}**" if ri in mean_best else mean
            cells.append(mean + ("" if complete[ri] or not np.isfinite(means[ri]) else " †"))
            lines.append("| " + " | ".join(cells) + " |")
        wins = _wins(block, rows, datasets, marked, {d: tested[(model, d)] for d in datasets if (model, d) in tested},
                     _exploratory(meta))
        lines += ["", wins] if wins else []
    return lines


def _wins(block: np.ndarray, rows: tuple, datasets: tuple, marked: list[set[int]], tested: dict[str, bool],
          exploratory: bool = False) -> str:
    """The exporter's Wins line; with a significance test, a win is a tested column whose only mark is its best."""
    if not any(tested.values()):
        return wins_line(block, rows, datasets)
    winners = [m if not tested.get(d, False) or len(m) == 1 else set() for d, m in zip(datasets, marked)]
    return wins_line(block, rows, datasets, winners, significant=True, scored=len(tested),
                     untested=[d for d in datasets if tested.get(d) is False], exploratory=exploratory)


def render_gains(folder: Path) -> list[str]:
    meta = json.loads((folder / "matrix.json").read_text())
    detail = {(c["model"], c["loss"], c["dataset"]): c for c in meta.get("cells_detail") or []}
    datasets, titles = meta["datasets"], dict(zip(meta["losses"], meta["loss_titles"]))
    lines: list[str] = []
    for model in meta["models"]:
        rows = [r for r in meta["losses"] if r != ZERO_SHOT and any((model, r, d) in detail for d in datasets)]
        helps, hurts = {d: 0 for d in datasets}, {d: 0 for d in datasets}
        if len(meta["models"]) > 1:
            lines += [f"{model}:", ""]
        lines += ["| Loss | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
        for row in rows:
            cells = [titles[row]]
            for d in datasets:
                gain = (detail.get((model, row, d)) or {}).get("vs_zero_shot")
                if not gain:
                    cells.append("n/a")
                    continue
                low, high = gain["ci95"]
                text = f"{100 * gain['difference']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"
                significant = low > 0 or high < 0
                helps[d] += low > 0
                hurts[d] += high < 0
                cells.append(f"**{text}**" if significant else text)
            lines.append("| " + " | ".join(cells) + " |")
        counts = ", ".join(f"{d} {helps[d]}/{hurts[d]}" for d in datasets)
        lines += ["", f"Rows that help / hurt significantly (of {len(rows)}): {counts}."]
        if len(meta["models"]) > 1:
            lines.append("")
    return lines[:-1] if lines and lines[-1] == "" else lines


def render_models(folder: Path) -> list[str]:
    meta = json.loads((folder / "matrix.json").read_text())
    values = np.load(folder / "matrix.npy")
    rows, titles, models = meta["losses"], meta["loss_titles"], meta["models"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # a row no model scored: all-NaN mean
        means = np.nanmean(values, axis=2)                     # models x rows
    zero = rows.index(ZERO_SHOT) if ZERO_SHOT in rows else None
    shown = [ri for ri in range(len(rows)) if np.isfinite(means[:, ri]).any()]
    best = [column_best(means[mi]) for mi in range(len(models))]
    head = " | ".join(f"{m} mean | gain" for m in models)
    lines = [f"| Loss | {head} |", "|---|" + "---:|---:|" * len(models)]
    for ri in shown:
        cells = [titles[ri]]
        for mi in range(len(models)):
            mean = pct(means[mi, ri]) if np.isfinite(means[mi, ri]) else "n/a"
            cells.append(f"**{mean}**" if ri in best[mi] else mean)
            gain = means[mi, ri] - means[mi, zero] if zero is not None and ri != zero else np.nan
            cells.append(f"{100 * gain:+.2f}" if np.isfinite(gain) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_include(path: Path) -> list[str]:
    return path.read_text().rstrip("\n").split("\n")


RENDERERS: dict[str, Callable[[Path], list[str]]] = {
    "matrix": render_matrix, "gains": render_gains, "include": render_include, "models": render_models,
    "combinations": render_combinations, "rerun": render_rerun, "rerun-gain": render_rerun_gain,
    "overlap": render_overlap, "protocols": render_protocols, "ibn-duplicates": render_ibn_duplicates}


def pages(root: Path) -> list[Path]:
    """The pages whose generated blocks this script keeps: README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def regenerate(readme: str, root: Path, page: str = "README.md") -> tuple[str, list[str]]:
    """(the page with every generated block re-rendered, the blocks whose content changed)."""
    stale: list[str] = []

    def replace(match: re.Match) -> str:
        start, kind, arg, old, end = match.groups()
        if kind not in RENDERERS:
            raise SystemExit(f"{page}: unknown generated kind {kind!r} (known: {', '.join(RENDERERS)})")
        new = "\n".join(RENDERERS[kind](root / arg)) + "\n"
        if new != old:
            stale.append(f"{kind} {arg}")
        return start + new + end

    return BLOCK.sub(replace, readme), stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    ap.add_argument("--root", type=Path, default=REPO,
                    help="repository root holding README.md and docs/ (default: this repo)")
    args = ap.parse_args(argv)
    any_stale = False
    for path in pages(args.root):
        if not path.is_file():
            continue
        page = path.relative_to(args.root).as_posix()
        text, stale = regenerate(path.read_text(), args.root, page)
        any_stale = any_stale or bool(stale)
        if args.check:
            for name in stale:
                print(f"{page}: generated block '{name}' is stale; run python scripts/readme_tables.py",
                      file=sys.stderr)
            continue
        if stale:
            path.write_text(text)
        if stale or BLOCK.search(text):
            print(f"{page}: {len(stale)} block(s) rewritten" + (f" ({', '.join(stale)})" if stale else ""))
    return 1 if args.check and any_stale else 0


if __name__ == "__main__":
    sys.exit(main())
