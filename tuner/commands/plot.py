"""``tuner plot``: re-plot a saved results matrix (an export's matrix.npy or a bare seed-layout .npy)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tuner.errors import TunerError
from tuner.exporter.files import check_out_dir
from tuner.losses.registry import SEED_ROWS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="re-plot a saved results matrix (.npy) as PNG + SVG",
        description="Draw the figures of a results matrix (models x loss rows x datasets) into OUT/plots/. Labels "
                    "come from --labels (an export's matrix.json, which names its rows), else from --models/--datasets "
                    f"(a bare .npy in the seed's layout: the seed's {len(SEED_ROWS)} loss rows in its order, or the "
                    "rows given by --losses), else from FILE.json / matrix.json beside the matrix.")
    p.add_argument("--matrix", required=True, help="the .npy file")
    p.add_argument("--labels", default=None, help="labels JSON (an export's matrix.json)")
    p.add_argument("--models", nargs="+", default=None, help="model names, in matrix order (space or comma separated)")
    p.add_argument("--datasets", nargs="+", default=None, help="dataset names, in matrix order")
    p.add_argument("--losses", nargs="+", default=None,
                   help=f"loss rows, in matrix order, e.g. {SEED_ROWS[-1]} (default: the seed's {len(SEED_ROWS)} rows)")
    p.add_argument("--metric", default=None, help="metric named in the titles (default: labels file, else Spearman)")
    p.add_argument("--split", default=None, help="split named in the titles (default: labels file, else test)")
    p.add_argument("--protocol", default=None, help="protocol named in the titles (default: labels file, else seed)")
    p.add_argument("--out", required=True, help="output folder; figures go to OUT/plots/")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p.set_defaults(func=run)


def _names(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunerError(f"labels file {path} does not exist; give an export's matrix.json or use --models/--datasets") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TunerError(f"cannot read labels file {path}: {exc}; give an export's matrix.json") from None
    if not isinstance(data, dict):
        raise TunerError(f"labels file {path} is not a JSON object with models/losses/datasets")
    return data


def load_matrix(path: Path):
    import numpy as np

    if not path.is_file():
        raise TunerError(f"matrix file {path} does not exist; give the .npy written by `tuner export` or the seed")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - not an .npy / pickled objects / truncated
        raise TunerError(f"cannot read {path} as a numeric .npy matrix ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'bad file'})") from None


def run(args: argparse.Namespace) -> int:
    from tuner.exporter.plots import check_labels, plot_matrix

    path = Path(args.matrix)
    matrix = load_matrix(path)
    labels: dict = {}
    if args.labels:
        labels = _read_json(Path(args.labels))
    elif args.models is None and args.datasets is None:
        for candidate in (path.with_suffix(".json"), path.parent / "matrix.json"):
            if candidate.is_file():
                labels = _read_json(candidate)
                break
        else:
            raise TunerError(f"no labels for {path}: give --labels FILE.json or --models ... --datasets ...")
    for key, value in (("models", _names(args.models)), ("datasets", _names(args.datasets)),
                       ("losses", _names(args.losses))):
        if value is not None:
            labels[key] = value
    if args.models is not None or args.datasets is not None:
        missing = [flag for flag, key in (("--models", "models"), ("--datasets", "datasets")) if not labels.get(key)]
        if missing:
            raise TunerError(f"{path}: give {' and '.join(missing)} too (one name per matrix entry)")
    labels["metric"] = args.metric or labels.get("metric") or "spearman"
    labels["split"] = args.split or labels.get("split") or "test"
    labels["protocol"] = args.protocol or labels.get("protocol") or "seed"
    check_labels(matrix, labels, source=f"matrix {path}")
    out = check_out_dir(Path(args.out))
    written = plot_matrix(matrix, labels, out)
    if args.json:
        print(json.dumps({"matrix": str(path), "shape": list(matrix.shape), "plots": [str(p) for p in written]},
                         indent=2))
    else:
        print(f"{len(written)} files written to {out / 'plots'} (matrix {tuple(matrix.shape)})")
    return 0
