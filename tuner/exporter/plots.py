"""Figures of a results matrix ``(models, loss rows, datasets)``: PNG + SVG into ``<out>/plots/``.

The seed notebook's views, plus a heatmap:

* ``mean_over_datasets``   -- mean over datasets per loss row, across models;
* ``loss_panels``          -- one panel per loss row: mean over datasets across models, +-1 std band
                              (std over datasets), the zero-shot mean dashed for reference;
* ``dataset_panels``       -- one panel per dataset: every loss row across models;
* ``loss_across_datasets`` -- mean over models per loss row, across datasets;
* ``model_panels``         -- one panel per model: every loss row across datasets;
* ``heatmap``              -- one panel per model: loss rows x (datasets + mean), values in the cells,
                              best per column in bold, ``n/a`` where a cell is empty.

Every loss row keeps one colour and marker in all figures (:data:`PALETTE`, :data:`MARKERS`).
NaN cells are skipped (lines break, means use the available datasets). Where an axis has a single
category (1 model, 1 dataset) the lines become a dot plot with the rows on the y axis.
Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, no global backend change).
"""
from __future__ import annotations

import io
import math
import textwrap
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from tuner.combos import LOSS_ROWS, ROW_TITLES
from tuner.errors import TunerError
from tuner.exporter.matrix import ROW_ALIASES, metric_title, write_file

#: One colour per loss row, kept across all figures (tab10-based; zero_shot is the neutral grey).
PALETTE: dict[str, str] = {
    "zero_shot": "#555555",
    "cos_mse": "#1f77b4",
    "cosent": "#ff7f0e",
    "ibn": "#2ca02c",
    "angle": "#d62728",
    "cosent+ibn": "#9467bd",
    "cosent+angle": "#8c564b",
    "ibn+angle": "#e377c2",
    "cosent+ibn+angle": "#17a2b8",
}
MARKERS: dict[str, str] = {
    "zero_shot": "s", "cos_mse": "o", "cosent": "^", "ibn": "v", "angle": "D",
    "cosent+ibn": "P", "cosent+angle": "X", "ibn+angle": "*", "cosent+ibn+angle": "h",
}
_EXTRA_COLOURS = ("#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a")
FORMATS = ("png", "svg")
FIGURES = ("mean_over_datasets", "loss_panels", "dataset_panels", "loss_across_datasets", "model_panels", "heatmap")
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
       "legend.fontsize": 9, "figure.titlesize": 12, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
       "axes.spines.right": False, "svg.hashsalt": "tuner"}
_MAX_LABEL = 24


def row_colour(row: str) -> str:
    if row in PALETTE:
        return PALETTE[row]
    return _EXTRA_COLOURS[sum(map(ord, row)) % len(_EXTRA_COLOURS)]


def row_title(row: str) -> str:
    return ROW_TITLES.get(row, row)


# --------------------------------------------------------------------------- labels
def check_labels(matrix: np.ndarray, labels: Mapping[str, Any], source: str = "the matrix") -> dict[str, Any]:
    """Normalise ``labels`` and check them against ``matrix``; one-line TunerError on any mismatch."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 3:
        raise TunerError(f"{source} has shape {tuple(matrix.shape)}; expected 3 axes (models, loss rows, datasets) "
                         f"as in the seed's layout (models, {len(LOSS_ROWS)}, datasets)")
    if not np.issubdtype(matrix.dtype, np.number) or np.issubdtype(matrix.dtype, np.complexfloating):
        raise TunerError(f"{source} holds {matrix.dtype} values; expected a float matrix")
    models = [str(m) for m in labels.get("models") or []]
    losses = [ROW_ALIASES.get(str(r).strip().lower(), str(r))          # "CoSENT+IBN" -> "cosent+ibn"
              for r in labels.get("losses") or labels.get("loss_rows") or LOSS_ROWS]
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


def _short(names: Sequence[str]) -> list[str]:
    """Display names: basename of paths / hub ids, shortened, kept unique."""
    def cut(text: str) -> str:
        return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 9] + "…" + text[-8:]

    base = [str(n).rstrip("/").rsplit("/", 1)[-1] or str(n) for n in names]
    shown = base if len(set(base)) == len(base) else [str(n) for n in names]
    shown = [cut(s) for s in shown]
    return shown if len(set(shown)) == len(shown) else [f"{i + 1}:{s}" for i, s in enumerate(shown)]


# --------------------------------------------------------------------------- helpers
def _scale(values: np.ndarray) -> float:
    """Scores are 0..1 internally; a seed matrix already in percent is left as is."""
    finite = values[np.isfinite(values)]
    return 100.0 if finite.size == 0 or float(np.max(np.abs(finite))) <= 1.0 + 1e-9 else 1.0


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _nanstd(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(a, axis=axis)


def _subtitle(lab: Mapping[str, Any]) -> str:
    unit = f"{metric_title(lab['metric'])} x100"
    parts = [unit, f"{lab['split']} split", f"protocol: {lab['protocol']}"]
    if lab.get("study"):
        parts.append(f"study: {lab['study']}")
    return " · ".join(parts)


def _grid(n_panels: int) -> tuple[int, int]:
    ncols = 1 if n_panels == 1 else 2 if n_panels in (2, 4) else 3 if n_panels <= 6 or n_panels == 9 else 4
    return math.ceil(n_panels / ncols), ncols


def _figure(n_panels: int, tick_labels: Sequence[str], rotate: bool, *, panel_w: float = 4.2,
            panel_h: float = 3.0, legend_w: float = 2.4, sharey: bool = True, sharex: bool = False,
            legend: bool = True) -> tuple[Figure, list[Any], int]:
    """A grid of panels. The legend goes into a free slot of the grid if there is one, to the right of
    a single panel, else below the panels (never where the title is)."""
    nrows, ncols = _grid(n_panels)
    free_slot = nrows * ncols > n_panels
    longest = max((len(t) for t in tick_labels), default=4)
    extra = min(1.8, 0.055 * longest) if rotate else 0.0
    width = panel_w * ncols + (legend_w if legend and n_panels == 1 else 0.3)
    below = legend and not free_slot and n_panels > 1
    legend_cols = max(1, min(len(LOSS_ROWS), int(width // 2.3)))
    height = (panel_h + extra) * nrows + 0.9 + (0.25 * math.ceil(len(LOSS_ROWS) / legend_cols) + 0.3 if below else 0)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, sharex=sharex, squeeze=False).ravel().tolist()
    for i, ax in enumerate(axes):
        if i >= n_panels:
            ax.set_visible(False)
        elif sharex and _bottom_of_column(i, n_panels, ncols):
            ax.xaxis.set_tick_params(labelbottom=True)   # the panel above an empty slot keeps its labels
    fig._tuner_legend = ("slot", axes[n_panels]) if free_slot else (  # type: ignore[attr-defined]
        ("right", axes[0]) if n_panels == 1 else ("below", legend_cols))
    return fig, axes[:n_panels], ncols


def _needs_rotation(labels: Sequence[str], panel_w: float = 4.2) -> bool:
    """Rotate tick labels when the longest one is wider than its category's share of the axis."""
    if len(labels) < 2:
        return False
    return max(len(t) for t in labels) * 0.075 > 0.85 * panel_w / len(labels)


def _lines(ax: Any, xlabels: Sequence[str], series: Sequence[tuple[str, np.ndarray]], rotate: bool, *,
           value_label: str, x_name: Optional[str] = None, first_col: bool = True, show_x: bool = True,
           bands: Optional[Mapping[str, np.ndarray]] = None,
           reference: Optional[tuple[str, np.ndarray]] = None) -> None:
    """One line per loss row over categorical x; a dot plot (rows on y, scores on x) when there is one x."""
    if len(xlabels) == 1:
        _dots(ax, series, bands, reference, row_labels=first_col and len(series) > 1)
        if show_x:
            ax.set_xlabel(f"{value_label} · {xlabels[0]}")
        return
    x = np.arange(len(xlabels))
    if reference is not None and np.isfinite(reference[1]).any():
        ax.plot(x, reference[1], color=row_colour(reference[0]), ls="--", lw=1.2, alpha=0.8, zorder=1)
    for row, y in series:
        if not np.isfinite(y).any():
            continue
        ax.plot(x, y, color=row_colour(row), marker=MARKERS.get(row, "o"), ms=5, lw=1.8,
                ls="--" if row == "zero_shot" else "-", label=row_title(row), zorder=3)
        if bands is not None and row in bands:
            lo, hi = y - bands[row], y + bands[row]
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.sum() >= 2:
                ax.fill_between(x, lo, hi, where=ok, color=row_colour(row), alpha=0.18, lw=0, zorder=2)
            elif ok.any():
                ax.errorbar(x[ok], y[ok], yerr=bands[row][ok], fmt="none", ecolor=row_colour(row), capsize=3)
    ax.set_xticks(x)
    ax.set_xlim(-0.5, len(xlabels) - 0.5)
    if show_x:
        ax.set_xticklabels(xlabels, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor")
        if x_name:
            ax.set_xlabel(x_name)
    else:
        ax.tick_params(labelbottom=False)
    if first_col:
        ax.set_ylabel(value_label)


def _dots(ax: Any, series: Sequence[tuple[str, np.ndarray]], bands: Optional[Mapping[str, np.ndarray]],
          reference: Optional[tuple[str, np.ndarray]], row_labels: bool = True) -> None:
    rows = [row for row, _ in series]
    if not rows:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#777777")
        ax.set_yticks([])
        return
    for i, (row, y) in enumerate(series):
        value = float(y[0])
        if not math.isfinite(value):
            ax.text(0.02, i, "n/a", transform=ax.get_yaxis_transform(), va="center", color="#777777", fontsize=8)
            continue
        err = None if bands is None or row not in bands or not np.isfinite(bands[row][0]) else float(bands[row][0])
        ax.errorbar([value], [i], xerr=None if err is None else [err], fmt=MARKERS.get(row, "o"), ms=7,
                    color=row_colour(row), capsize=3, label=row_title(row), zorder=3)
        ax.annotate(f"{value:.1f}", (value, i), xytext=(6, 4), textcoords="offset points", fontsize=8,
                    color="#333333")
    if reference is not None and np.isfinite(reference[1][0]):
        ax.axvline(float(reference[1][0]), color=row_colour(reference[0]), ls="--", lw=1.2, alpha=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([row_title(r) for r in rows])
    if not row_labels:  # hide, not clear: a shared y axis shares its tick labels with the first column
        ax.tick_params(axis="y", length=0, labelleft=False)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.margins(x=0.15)


def _legend(fig: Figure, axes: Sequence[Any], rows: Sequence[str]) -> None:
    """One legend per figure, loss rows in the seed's order: in a free panel slot, else outside right."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ordered = [(row_title(r), handles[row_title(r)]) for r in rows if row_title(r) in handles]
    if not ordered:
        return
    where, target = getattr(fig, "_tuner_legend", ("below", 3))
    handles_, labels_ = [h for _, h in ordered], [t for t, _ in ordered]
    if where == "slot":
        target.set_visible(True)
        target.axis("off")
        target.legend(handles_, labels_, loc="center", title="Loss", frameon=False)
    elif where == "right":
        target.legend(handles_, labels_, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                      title="Loss", frameon=False)
    else:
        fig.legend(handles_, labels_, loc="outside lower center", ncol=target, title="Loss", frameon=False)


def _bottom_of_column(index: int, n_panels: int, ncols: int) -> bool:
    return index + ncols >= n_panels


# --------------------------------------------------------------------------- the figures
def plot_matrix(matrix: Any, labels: Optional[Mapping[str, Any]], out_dir: Path | str,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write every figure of :data:`FIGURES` as PNG and SVG into ``<out_dir>/plots/``; returns the paths.

    ``matrix`` is an array ``(models, loss rows, datasets)`` (or a :class:`tuner.exporter.matrix.Matrix`,
    whose labels are used when ``labels`` is None); ``labels`` holds ``models``, ``losses`` (default:
    :data:`tuner.combos.LOSS_ROWS`), ``datasets`` and, for the titles, ``metric``, ``split``, ``protocol``
    and ``study``.
    """
    if hasattr(matrix, "values") and hasattr(matrix, "labels") and callable(matrix.labels):
        labels = labels if labels is not None else matrix.labels()
        matrix = matrix.values
    values = np.asarray(matrix, dtype=float) if np.asarray(matrix).dtype != object else np.asarray(matrix)
    lab = check_labels(values, labels or {})
    values = values.astype(float)
    scale = _scale(values)
    shown = values * scale
    plot_dir = Path(out_dir) / "plots"
    written: list[Path] = []
    with matplotlib.rc_context(_RC):
        for name, builder in (("mean_over_datasets", _fig_mean_over_datasets), ("loss_panels", _fig_loss_panels),
                              ("dataset_panels", _fig_dataset_panels),
                              ("loss_across_datasets", _fig_loss_across_datasets),
                              ("model_panels", _fig_model_panels), ("heatmap", _fig_heatmap)):
            fig = builder(shown, lab, scale)
            for i, fmt in enumerate(formats):
                buffer = io.BytesIO()
                fig.savefig(buffer, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
                if i == 0:
                    fig.set_layout_engine("none")  # keep the layout just computed; the next format reuses it
                written.append(write_file(plot_dir / f"{name}.{fmt}", buffer.getvalue()))
    return written


def _rows_with_data(values: np.ndarray, rows: Sequence[str]) -> list[int]:
    return [ri for ri in range(len(rows)) if np.isfinite(values[:, ri, :]).any()]


def _fig_mean_over_datasets(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models = lab["losses"], _short(lab["models"])
    rotate = _needs_rotation(models, 7.0)
    fig, (ax,), _ = _figure(1, models, rotate, panel_w=max(5.5, 0.9 * len(models) + 2.5), panel_h=4.2)
    means = _nanmean(values, axis=2)                                         # (models, rows)
    series = [(rows[ri], means[:, ri]) for ri in _rows_with_data(values, rows)]
    _lines(ax, models, series, rotate, value_label=f"mean {metric_title(lab['metric'])} over datasets",
           x_name="model")
    ax.set_title(f"Mean over datasets per loss, across models\n{_subtitle(lab)}", fontsize=12)
    if len(models) > 1:
        _legend(fig, [ax], rows)
    return fig


def _fig_loss_panels(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models = lab["losses"], _short(lab["models"])
    keep = _rows_with_data(values, rows) or [0]
    rotate = _needs_rotation(models)
    dot = len(models) == 1
    # One model: each panel is a one-row dot plot; the panels share the score (x) axis, not the rows.
    fig, axes, ncols = _figure(len(keep), models, rotate, sharey=not dot, sharex=dot, legend=False,
                               panel_h=1.9 if dot else 3.0)
    means, stds = _nanmean(values, axis=2), _nanstd(values, axis=2)        # (models, rows)
    zero = rows.index("zero_shot") if "zero_shot" in rows else None
    for i, (ax, ri) in enumerate(zip(axes, keep)):
        row = rows[ri]
        reference = None if zero is None or ri == zero else ("zero_shot", means[:, zero])
        _lines(ax, models, [(row, means[:, ri])], rotate, value_label="mean ± std over datasets",
               first_col=i % ncols == 0, show_x=_bottom_of_column(i, len(keep), ncols), bands={row: stds[:, ri]},
               reference=reference)
        ax.set_title(row_title(row), color=row_colour(row), fontweight="bold")
    note = "; dashed: Without Fine-Tuning" if zero is not None and np.isfinite(means[:, zero]).any() else ""
    fig.suptitle(f"Per loss: mean over datasets across models (band ±1 std over datasets{note})\n"
                 f"{_subtitle(lab)}")
    return fig


def _fig_dataset_panels(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models, datasets = lab["losses"], _short(lab["models"]), _short(lab["datasets"])
    keep_rows = _rows_with_data(values, rows)
    rotate = _needs_rotation(models)
    fig, axes, ncols = _figure(len(datasets), models, rotate, sharex=len(models) == 1)
    for di, ax in enumerate(axes):
        series = [(rows[ri], values[:, ri, di]) for ri in keep_rows]
        _lines(ax, models, series, rotate, value_label=metric_title(lab["metric"]), first_col=di % ncols == 0,
               show_x=_bottom_of_column(di, len(datasets), ncols))
        ax.set_title(datasets[di])
    fig.suptitle(f"Per dataset: every loss across models\n{_subtitle(lab)}")
    if len(models) > 1:
        _legend(fig, axes, rows)
    return fig


def _fig_loss_across_datasets(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, datasets = lab["losses"], _short(lab["datasets"])
    rotate = _needs_rotation(datasets, 7.0)
    fig, (ax,), _ = _figure(1, datasets, rotate, panel_w=max(5.5, 0.8 * len(datasets) + 2.5), panel_h=4.2)
    means = _nanmean(values, axis=0)                                         # (rows, datasets)
    series = [(rows[ri], means[ri]) for ri in _rows_with_data(values, rows)]
    n = len(lab["models"])
    _lines(ax, datasets, series, rotate, x_name="dataset",
           value_label=f"mean {metric_title(lab['metric'])} over {n} models" if n > 1 else metric_title(lab["metric"]))
    ax.set_title(f"Per loss across datasets (mean over models)\n{_subtitle(lab)}", fontsize=12)
    if len(datasets) > 1:
        _legend(fig, [ax], rows)
    return fig


def _fig_model_panels(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models, datasets = lab["losses"], _short(lab["models"]), _short(lab["datasets"])
    keep_rows = _rows_with_data(values, rows)
    rotate = _needs_rotation(datasets)
    fig, axes, ncols = _figure(len(models), datasets, rotate, sharex=len(datasets) == 1)
    for mi, ax in enumerate(axes):
        series = [(rows[ri], values[mi, ri, :]) for ri in keep_rows]
        _lines(ax, datasets, series, rotate, value_label=metric_title(lab["metric"]), first_col=mi % ncols == 0,
               show_x=_bottom_of_column(mi, len(models), ncols))
        ax.set_title(models[mi])
    fig.suptitle(f"Per model: every loss across datasets\n{_subtitle(lab)}")
    if len(datasets) > 1:
        _legend(fig, axes, rows)
    return fig


def _fig_heatmap(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    models, datasets = _short(lab["models"]), _short(lab["datasets"])
    # Loss rows without a single result anywhere (not in the grid, or not run yet) are listed, not drawn.
    keep = _rows_with_data(values, lab["losses"]) or list(range(len(lab["losses"])))
    hidden = [row_title(r) for i, r in enumerate(lab["losses"]) if i not in keep]
    rows = [lab["losses"][i] for i in keep]
    values = values[:, keep, :]
    n_models, n_rows, n_data = values.shape
    means = _nanmean(values, axis=2)[:, :, None]                              # (models, rows, 1)
    full = np.concatenate([values, means], axis=2)                            # datasets + mean column
    columns = [*datasets, "Mean"]
    ncols = 1 if n_models <= 3 else 2
    nrows = math.ceil(n_models / ncols)
    rotate = _needs_rotation(columns, 0.62 * len(columns))
    cell_w, cell_h = 0.68, 0.36
    longest = max(len(c) for c in columns)
    width = (1.9 + cell_w * len(columns)) * ncols + 1.2
    height = (cell_h * n_rows + 0.9 + (min(1.4, 0.06 * longest) if rotate else 0.2)) * nrows + 0.9
    fig = Figure(figsize=(max(width, 6.0), height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_models:]:
        ax.set_visible(False)
    finite = full[np.isfinite(full)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e6e6e6")
    image = None
    fontsize = 8.5 if len(columns) <= 10 else 7.5
    for mi in range(n_models):
        ax = axes[mi]
        block = np.ma.masked_invalid(full[mi])
        image = ax.imshow(block, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        best = {c: np.nanmax(full[mi][:, c]) for c in range(full.shape[2]) if np.isfinite(full[mi][:, c]).any()}
        for ri in range(n_rows):
            for c in range(full.shape[2]):
                value = full[mi, ri, c]
                if not math.isfinite(value):
                    ax.text(c, ri, "n/a", ha="center", va="center", fontsize=fontsize - 0.5, color="#808080")
                    continue
                level = (value - vmin) / (vmax - vmin)
                ax.text(c, ri, f"{value:.1f}", ha="center", va="center", fontsize=fontsize,
                        color="black" if level > 0.55 else "white",
                        fontweight="bold" if value == best.get(c) else "normal")
        ax.axvline(n_data - 0.5, color="white", lw=3)
        ax.set_xticks(range(len(columns)))
        ax.set_xticklabels(columns, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor")
        ax.set_yticks(range(n_rows))
        ax.set_yticklabels([row_title(r) for r in rows])
        for tick, row in zip(ax.get_yticklabels(), rows):
            tick.set_color(row_colour(row) if row != "zero_shot" else "#333333")
        ax.tick_params(length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(models[mi])
    if image is not None:
        fig.colorbar(image, ax=axes[:n_models], shrink=min(1.0, 6.0 / max(height, 1.0)) if nrows > 2 else 0.9,
                     label=f"{metric_title(lab['metric'])} x100", pad=0.02)
    fig.suptitle(f"Results matrix (bold: best per column; n/a: no complete trial)\n{_subtitle(lab)}")
    if hidden:
        note = f"Not shown, no results for any model: {', '.join(hidden)}"
        fig.supxlabel("\n".join(textwrap.wrap(note, width=max(40, int(fig.get_figwidth() * 12)))), fontsize=9,
                      color="#555555")
    return fig
