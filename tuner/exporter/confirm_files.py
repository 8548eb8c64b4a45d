"""The files of ``confirm --out DIR``: the report, a table, a plot with intervals, the winner's command.

* ``confirm.json``: the report (:func:`tuner.exporter.confirm.confirm_report`), strict JSON.
* ``confirm.csv`` / ``confirm.md``: one row per configuration and baseline: seeds, dev and test
  mean, std and 95% interval, the Holm-adjusted p of its comparison with the best configuration,
  and the mean CPU and wall time of one cell.
* ``plots/confirm.png|svg``: test mean with its 95% t-interval per system (the zero-shot model, one
  value, without a bar); the winner (if any) drawn filled.
* ``best_finetune.json``: the winner's ``python -m tuner finetune`` command
  (:func:`tuner.exporter.best.best_finetune` of the winner's first-seed trial) plus its confirmed
  summary. Not written when there is no winner (a tie): the report says why.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Optional

import matplotlib
import pandas as pd

from tuner.exporter.best import best_finetune
from tuner.exporter.confirm import format_p, moved_to, verdict
from tuner.exporter.files import check_out_dir, json_dumps, write_file
from tuner.exporter.plot_parts import RC


def confirm_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per system: what ``confirm.csv`` holds (scores in 0..1)."""
    p_vs_best = {c["b"]: c["p_holm"] for c in report["comparisons"] if c["kind"] == "vs_best"}
    rows = []
    for kind, entries in (("configuration", report["configs"]), ("baseline", report["baselines"])):
        for e in entries:
            row: dict[str, Any] = {"system": e["label"], "kind": kind, "n_seeds": len(e["seeds"])}
            for split in ("dev", "test"):
                block = e[split]
                ci = block.get("ci") or [None, None]
                row.update({f"{split}_mean": block["mean"], f"{split}_std": block["std"],
                            f"{split}_ci_low": ci[0], f"{split}_ci_high": ci[1]})
            row["parent_dev"] = e.get("parent_dev")
            cost = e.get("cost") or {}
            row["cpu_s_per_cell"], row["wall_s_per_cell"] = cost.get("cpu_s_per_cell"), cost.get("wall_s_per_cell")
            row["p_holm_vs_best"] = p_vs_best.get(e["label"]) if kind == "configuration" else None
            row["winner"] = e["label"] == report["winner"]
            rows.append(row)
    return pd.DataFrame(rows)


def confirm_markdown(report: Mapping[str, Any]) -> str:
    """``confirm.md``: the table x100 with intervals, then the winner or the tie."""
    frame = confirm_frame(report)

    def cell(row: Any, split: str) -> str:
        if pd.isna(row[f"{split}_mean"]):
            return "-"
        text = f"{100 * row[f'{split}_mean']:.2f}"
        if not pd.isna(row[f"{split}_ci_low"]):
            text += f" [{100 * row[f'{split}_ci_low']:.2f}, {100 * row[f'{split}_ci_high']:.2f}]"
        return text

    lines = [f"# Confirmation of study `{report['parent']}`{moved_to(report.get('on'), report.get('model'))}", "",
             f"Seeds {', '.join(map(str, report['budget']['seeds']))}; {report['metric']} x100, mean [95% t-interval] "
             "over seeds; p: paired two-stage bootstrap over seeds x test items, Holm-adjusted; CPU and wall "
             "minutes: the mean per cell (one seed's training and scoring).", "",
             "| system | seeds | dev | test | p vs best (Holm) | CPU min / cell | wall min / cell |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def minutes(value: Any) -> str:
        return "-" if value is None or pd.isna(value) else f"{value / 60:.1f}"

    n_resamples = next((c["n_resamples"] for c in report["comparisons"] if c.get("n_resamples")), None)
    family = sum(c["p"] is not None for c in report["comparisons"])  # what Holm adjusted over
    for _, row in frame.iterrows():
        p = "" if pd.isna(row["p_holm_vs_best"]) else format_p(row["p_holm_vs_best"], n_resamples, family)
        name = f"**{row['system']}**" if row["winner"] else row["system"]
        lines.append(f"| {name} | {row['n_seeds']} | {cell(row, 'dev')} | {cell(row, 'test')} | {p} | "
                     f"{minutes(row['cpu_s_per_cell'])} | {minutes(row['wall_s_per_cell'])} |")
    lines.append("")
    cells = report.get("cells")
    if report.get("complete") is False and cells is not None:
        lines.insert(2, f"**Partial**: {cells['complete']} of {cells['total']} cells complete; the same `confirm` "
                        "command resumes the rest.\n")
    if report["winner"] is None and report.get("complete") is False:
        lines.append("No verdict yet: not every cell has run.")
    else:
        lines.append(verdict(report, bold=True))
    return "\n".join(lines) + "\n"


def confirm_plot(report: Mapping[str, Any], plot_dir: Path) -> list[Path]:
    """``confirm.png|svg``: test mean and 95% interval per system."""
    from matplotlib.figure import Figure

    entries = [e for e in list(report["configs"]) + list(report["baselines"]) if e["test"]["mean"] is not None]
    written: list[Path] = []
    if not entries:
        return written
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.0, 0.45 * len(entries) + 1.2), layout="constrained")
        ax = fig.add_subplot()
        for y, e in enumerate(reversed(entries)):
            mean, ci = 100 * e["test"]["mean"], e["test"].get("ci")
            err = None if not ci else [[mean - 100 * ci[0]], [100 * ci[1] - mean]]
            baseline = e in report["baselines"]
            ax.errorbar([mean], [y], xerr=err, fmt="s" if baseline else "o", capsize=3,
                        color="grey" if baseline else "C0", mfc="C0" if e["label"] == report["winner"] else "white")
        ax.set_yticks(range(len(entries)), [e["label"] for e in reversed(entries)])
        ax.set_xlabel(f"test {report['metric']} x100 (mean, 95% t-interval over seeds)")
        ax.set_title(f"confirmation of {report['parent']}{moved_to(report.get('on'), report.get('model'))}")
        for fmt in ("png", "svg"):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
            written.append(write_file(plot_dir / f"confirm.{fmt}", buffer.getvalue()))
    return written


def write_confirm(report: Mapping[str, Any], out_dir: "str | Path", winner_trial: Optional[Any] = None) -> dict[str, Path]:
    """Write the files of the module docstring into ``out_dir``; returns {name: path}."""
    out = check_out_dir(Path(out_dir))
    files = {"json": write_file(out / "confirm.json", json_dumps(report)),
             "csv": write_file(out / "confirm.csv", confirm_frame(report).to_csv(index=False, float_format="%.6g")),
             "md": write_file(out / "confirm.md", confirm_markdown(report))}
    for path in confirm_plot(report, out / "plots"):
        files[f"plot_{path.suffix[1:]}"] = path
    if report["winner"] is not None and winner_trial is not None:
        winner = next(c for c in report["configs"] if c["label"] == report["winner"])
        record = {**best_finetune(winner_trial, report.get("study")),
                  "confirmed": {k: winner[k] for k in ("label", "seeds", "dev", "test", "parent_trials")},
                  "confirmed_by": "python -m tuner confirm: " + (
                      "the only configuration confirmed (--top 1), not compared with another" if len(report["configs"]) == 1
                      else "the winner is significantly better on test than every other configuration")
                  + " (docs/confirm.md)"}
        files["best_finetune"] = write_file(out / "best_finetune.json", json_dumps(record))
    return files
