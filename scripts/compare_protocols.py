"""How much of a grid's fine-tuning gain survives a sentence-disjoint split.

Reads two exports of the same grid (``tuner export``; one under the ``seed`` protocol, one under
``disjoint``, each with several seeds per cell) and writes one JSON record with, per dataset:

* each protocol's zero-shot score and, per loss row, the gain over zero-shot on that protocol's own
  test split (the export's paired bootstrap: ``cells_detail[*].vs_zero_shot``), and how many rows
  gain significantly (one-sided p < alpha);
* the mean gain over the fine-tuned rows under each protocol, and their difference: the part of
  the seed protocol's gain that does not hold once no test sentence was trained on;
* Spearman's rank correlation of the loss rows' test scores between the two protocols (do the
  rankings survive?) and the best row under each.

The two protocols test on different pairs, so raw scores are not compared: gains over each
split's own zero-shot are.

    python scripts/compare_protocols.py docs/results/sts-grid-cpu-seed-r3 docs/results/sts-grid-cpu-disjoint-r3 \
        --out docs/results/sts-grid-cpu-protocols.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

ZERO_SHOT = "zero_shot"


def cells(folder: Path) -> tuple[dict, dict[tuple[str, str], dict]]:
    """(matrix.json, its cells_detail keyed by (loss, dataset)) of a one-model export."""
    meta = json.loads((folder / "matrix.json").read_text())
    if len(meta["models"]) != 1:
        raise SystemExit(f"{folder}: {len(meta['models'])} models; compare one-model exports")
    return meta, {(c["loss"], c["dataset"]): c for c in meta["cells_detail"]}


def zero_shot(folder: Path, meta: dict, dataset: str) -> float:
    values = np.load(folder / "matrix.npy")
    return float(values[0, meta["losses"].index(ZERO_SHOT), meta["datasets"].index(dataset)])


def protocol_side(folder: Path, meta: dict, detail: dict, dataset: str, rows: list[str], alpha: float) -> dict[str, Any]:
    gains = {row: detail[(row, dataset)]["vs_zero_shot"] for row in rows}
    means = {row: detail[(row, dataset)]["mean"] for row in rows}
    return {
        "protocol": meta["protocol"],
        "zero_shot": zero_shot(folder, meta, dataset),
        "test_mean": means,
        "gain": {row: g["difference"] for row, g in gains.items()},
        "gain_ci95": {row: g["ci95"] for row, g in gains.items()},
        "rows_gaining_significantly": sorted(row for row, g in gains.items() if g["p_first_not_better"] < alpha),
        "mean_gain": float(np.mean([g["difference"] for g in gains.values()])),
        "best_row": max(means, key=means.get),
        "marked_rows": sorted(row for row in rows if detail[(row, dataset)].get("marked")),
    }


def compare(seed_dir: Path, disjoint_dir: Path, alpha: float = 0.05) -> dict[str, Any]:
    (seed_meta, seed_cells), (dis_meta, dis_cells) = cells(seed_dir), cells(disjoint_dir)
    rows = [r for r in seed_meta["losses"] if r != ZERO_SHOT and any(k[0] == r for k in seed_cells)]
    datasets = [d for d in seed_meta["datasets"] if d in dis_meta["datasets"]]
    per_dataset = {}
    for dataset in datasets:
        seed = protocol_side(seed_dir, seed_meta, seed_cells, dataset, rows, alpha)
        dis = protocol_side(disjoint_dir, dis_meta, dis_cells, dataset, rows, alpha)
        rho = spearmanr([seed["test_mean"][r] for r in rows], [dis["test_mean"][r] for r in rows]).statistic
        per_dataset[dataset] = {
            "seed": seed, "disjoint": dis, "rank_correlation": float(rho),
            "gain_lost": seed["mean_gain"] - dis["mean_gain"],
            "n_seeds": seed_cells[(rows[0], dataset)]["n_seeds"],
        }
    return {
        "seed_export": str(seed_dir), "disjoint_export": str(disjoint_dir), "alpha": alpha, "rows": rows,
        "loss_titles": dict(zip(seed_meta["losses"], seed_meta["loss_titles"])),
        "metric": seed_meta["metric"], "datasets": per_dataset,
        "mean_gain": {p: float(np.mean([d[p]["mean_gain"] for d in per_dataset.values()])) for p in ("seed", "disjoint")},
        "rule": "gain = a row's test score minus zero-shot on the same protocol's test split (paired bootstrap of the "
                "export); mean_gain averages the fine-tuned rows; gain_lost = seed mean gain - disjoint mean gain; "
                "rank_correlation = Spearman over the rows' mean test scores of the two protocols",
    }


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seed_export", type=Path)
    ap.add_argument("disjoint_export", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args(argv)
    record = compare(args.seed_export, args.disjoint_export, args.alpha)
    args.out.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
