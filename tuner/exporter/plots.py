"""Figures of a results matrix ``(models, rows, datasets)``: PNG + SVG into ``<out>/plots/``.

The seed notebook's views, plus a heatmap (builders in :mod:`tuner.exporter.figures`):

* ``mean_over_datasets``   -- mean over datasets per row, across models;
* ``loss_panels``          -- one panel per row: mean over datasets across models, +-1 std band
                              (std over datasets), the zero-shot mean dashed for reference;
* ``dataset_panels``       -- one panel per dataset: every row across models;
* ``loss_across_datasets`` -- mean over models per row, across datasets;
* ``model_panels``         -- one panel per model: every row across datasets;
* ``heatmap``              -- one panel per model: rows x (datasets + mean), values in the cells,
                              best per column in bold, ``n/a`` where a cell is empty.

Rows are the matrix's (the seed's 9, plus any other loss combination with data: up to 16 with the
built-in losses). Every row keeps one colour and marker in all figures, from the loss registry
(:func:`tuner.losses.registry.row_style`). NaN cells are skipped (lines break, means use the
available datasets). Where an axis has a single category (1 model, 1 dataset) the lines become a
dot plot with the rows on the y axis. Figures are built with :class:`matplotlib.figure.Figure`
(no pyplot, no global backend change).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import matplotlib
import numpy as np

from tuner.errors import TunerError
from tuner.exporter.figures import BUILDERS
from tuner.exporter.files import write_file
from tuner.exporter.plot_parts import RC, row_colour, row_marker, scale_of
from tuner.exporter.rows import SEED_ROWS, normalise

__all__ = ["BUILDERS", "FIGURES", "FORMATS", "RC", "check_labels", "plot_matrix", "row_colour", "row_marker",
           "scale_of"]

FORMATS = ("png", "svg")
FIGURES = tuple(BUILDERS)


def check_labels(matrix: np.ndarray, labels: Mapping[str, Any], source: str = "the matrix") -> dict[str, Any]:
    """Normalise ``labels`` and check them against ``matrix``; one-line TunerError on any mismatch.

    ``losses`` may hold row labels or titles in any registered spelling; without it the matrix is
    taken to have the seed's rows (a bare seed ``.npy``)."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 3:
        raise TunerError(f"{source} has shape {tuple(matrix.shape)}; expected 3 axes (models, loss rows, datasets) "
                         f"as in the seed's layout (models, {len(SEED_ROWS)}, datasets)")
    if not np.issubdtype(matrix.dtype, np.number) or np.issubdtype(matrix.dtype, np.complexfloating):
        raise TunerError(f"{source} holds {matrix.dtype} values; expected a float matrix")
    models = [str(m) for m in labels.get("models") or []]
    losses = [normalise(r) for r in labels.get("losses") or labels.get("loss_rows") or SEED_ROWS]
    datasets = [str(d) for d in labels.get("datasets") or []]
    given = (len(models), len(losses), len(datasets))
    if given != tuple(matrix.shape):
        raise TunerError(f"{source} has shape {tuple(matrix.shape)} (models, loss rows, datasets) but the labels give "
                         f"{given[0]} models x {given[1]} loss rows x {given[2]} datasets; make --models/--datasets "
                         f"(or the labels file) match the matrix")
    for axis, names in (("models", models), ("loss rows", losses), ("datasets", datasets)):
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise TunerError(f"duplicate {axis} label(s) {', '.join(dupes)}; give each a distinct name")
    return {"models": models, "losses": losses, "datasets": datasets,
            "metric": str(labels.get("metric") or "score"), "split": str(labels.get("split") or "test"),
            "protocol": str(labels.get("protocol") or "unknown"), "study": labels.get("study")}


def plot_matrix(matrix: Any, labels: Optional[Mapping[str, Any]], out_dir: Path | str,
                formats: Sequence[str] = FORMATS, *, errors: Optional[np.ndarray] = None,
                marks: Optional[np.ndarray] = None) -> list[Path]:
    """Write every figure of :data:`FIGURES` as PNG and SVG into ``<out_dir>/plots/``; returns the paths.

    ``matrix`` is an array ``(models, rows, datasets)`` (or a :class:`tuner.exporter.matrix.Matrix`,
    whose labels are used when ``labels`` is None); ``labels`` holds ``models``, ``losses`` (the row
    labels; default: the seed's rows), ``datasets`` and, for the titles, ``metric``, ``split``,
    ``protocol`` and ``study``. ``errors`` (std over seeds per cell, NaN for one seed) adds error
    bars; ``marks`` (bool per cell) picks the heatmap's bold cells (default: the column maximum).
    """
    if hasattr(matrix, "values") and hasattr(matrix, "labels") and callable(matrix.labels):
        labels = labels if labels is not None else matrix.labels()
        if errors is None and getattr(matrix, "std", np.zeros(0)).shape == matrix.values.shape:
            errors = matrix.std
        sig = getattr(matrix, "significance", None)
        if marks is None and sig is not None and any(sig.tested.values()):
            marks = sig.marks
        matrix = matrix.values
    values = np.asarray(matrix, dtype=float) if np.asarray(matrix).dtype != object else np.asarray(matrix)
    lab = check_labels(values, labels or {})
    values = values.astype(float)
    scale = scale_of(values)
    shown = values * scale
    if errors is not None:
        lab["errors"] = np.asarray(errors, dtype=float) * scale     # std over seeds: error bars
    if marks is not None:
        lab["marks"] = np.asarray(marks, dtype=bool)               # bold cells of the heatmap
    plot_dir = Path(out_dir) / "plots"
    written: list[Path] = []
    with matplotlib.rc_context(RC):
        for name, builder in BUILDERS.items():
            fig = builder(shown, lab, scale)
            for i, fmt in enumerate(formats):
                buffer = io.BytesIO()
                fig.savefig(buffer, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
                if i == 0:
                    fig.set_layout_engine("none")  # keep the layout just computed; the next format reuses it
                written.append(write_file(plot_dir / f"{name}.{fmt}", buffer.getvalue()))
    return written
