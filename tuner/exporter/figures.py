"""The six figures of a results matrix ``(models, rows, datasets)`` (values already scaled to x100).

Each builder takes ``(values, labels, scale)`` and returns a :class:`matplotlib.figure.Figure`;
:func:`tuner.exporter.plots.plot_matrix` saves them. Rows without a single score are left out of
every figure (the heatmap names them underneath).
"""
from __future__ import annotations

import math
import textwrap
from typing import Any, Mapping

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from tuner.exporter.plot_parts import (
    add_legend,
    bottom_of_column,
    dot_height,
    draw_lines,
    figure_grid,
    nanmean,
    nanstd,
    needs_rotation,
    row_colour,
    rows_with_data,
    short_names,
    subtitle,
)
from tuner.exporter.rows import ZERO_SHOT, title
from tuner.exporter.trials import metric_title


def _legend_labels(values: np.ndarray, rows: list[str]) -> list[str]:
    return [title(rows[ri]) for ri in rows_with_data(values, rows)]


def _errors(lab: Mapping[str, Any], keep: list[int], rows: list[str], where: tuple) -> "dict[str, np.ndarray] | None":
    """Per row, the std over seeds of the cells at ``where`` = (model index or slice, dataset index or slice)."""
    std = lab.get("errors")
    if std is None or not np.isfinite(std).any():
        return None
    mi, di = where
    return {rows[ri]: np.atleast_1d(std[mi, ri, di]) for ri in keep}


def mean_over_datasets(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models = lab["losses"], short_names(lab["models"])
    keep = rows_with_data(values, rows)
    rotate = needs_rotation(models, 7.0)
    many = len(models) > 1
    fig, (ax,), _ = figure_grid(1, models, rotate, legend_labels=_legend_labels(values, rows) if many else (),
                                row_labels=() if many else _legend_labels(values, rows),
                                panel_w=max(5.5, 0.9 * len(models) + 2.5),
                                panel_h=4.2 if many else max(4.2, dot_height(len(keep))))
    means = nanmean(values, axis=2)                                          # (models, rows)
    draw_lines(ax, models, [(rows[ri], means[:, ri]) for ri in keep], rotate,
               value_label=f"mean {metric_title(lab['metric'])} over datasets", x_name="model")
    fig.suptitle(f"Mean over datasets per loss, across models\n{subtitle(lab)}")   # centred on the figure
    if many:
        add_legend(fig, [ax], rows)
    return fig


def loss_panels(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models = lab["losses"], short_names(lab["models"])
    keep = rows_with_data(values, rows) or [0]
    rotate = needs_rotation(models)
    dot = len(models) == 1
    # One model: each panel is a one-row dot plot; the panels share the score (x) axis, not the rows.
    fig, axes, ncols = figure_grid(len(keep), models, rotate, sharey=not dot, sharex=dot,
                                   panel_h=1.9 if dot else 3.0)
    means, stds = nanmean(values, axis=2), nanstd(values, axis=2)          # (models, rows)
    zero = rows.index(ZERO_SHOT) if ZERO_SHOT in rows else None
    for i, (ax, ri) in enumerate(zip(axes, keep)):
        row = rows[ri]
        reference = None if zero is None or ri == zero else (ZERO_SHOT, means[:, zero])
        draw_lines(ax, models, [(row, means[:, ri])], rotate, value_label="mean ± std over datasets",
                   first_col=i % ncols == 0, show_x=bottom_of_column(i, len(keep), ncols),
                   bands={row: stds[:, ri]}, reference=reference)
        ax.set_title(title(row), color=row_colour(row), fontweight="bold")
    note = f"; dashed: {title(ZERO_SHOT)}" if zero is not None and np.isfinite(means[:, zero]).any() else ""
    fig.suptitle(f"Per loss: mean over datasets across models (band ±1 std over datasets{note})\n{subtitle(lab)}")
    return fig


def dataset_panels(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models, datasets = lab["losses"], short_names(lab["models"]), short_names(lab["datasets"])
    keep = rows_with_data(values, rows)
    rotate = needs_rotation(models)
    many = len(models) > 1
    fig, axes, ncols = figure_grid(len(datasets), models, rotate, sharex=not many,
                                   legend_labels=_legend_labels(values, rows) if many else (),
                                   row_labels=() if many else _legend_labels(values, rows),
                                   panel_h=3.0 if many else dot_height(len(keep)))
    for di, ax in enumerate(axes):
        draw_lines(ax, models, [(rows[ri], values[:, ri, di]) for ri in keep], rotate,
                   value_label=metric_title(lab["metric"]), first_col=di % ncols == 0,
                   show_x=bottom_of_column(di, len(datasets), ncols), errors=_errors(lab, keep, rows, (slice(None), di)))
        ax.set_title(datasets[di])
    fig.suptitle(f"Per dataset: every loss across models\n{subtitle(lab)}")
    if many:
        add_legend(fig, axes, rows)
    return fig


def loss_across_datasets(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, datasets = lab["losses"], short_names(lab["datasets"])
    keep = rows_with_data(values, rows)
    rotate = needs_rotation(datasets, 7.0)
    many = len(datasets) > 1
    fig, (ax,), _ = figure_grid(1, datasets, rotate, legend_labels=_legend_labels(values, rows) if many else (),
                                row_labels=() if many else _legend_labels(values, rows),
                                panel_w=max(5.5, 0.8 * len(datasets) + 2.5),
                                panel_h=4.2 if many else max(4.2, dot_height(len(keep))))
    means = nanmean(values, axis=0)                                          # (rows, datasets)
    n = len(lab["models"])
    draw_lines(ax, datasets, [(rows[ri], means[ri]) for ri in keep], rotate, x_name="dataset",
               value_label=f"mean {metric_title(lab['metric'])} over {n} models" if n > 1
               else metric_title(lab["metric"]))
    fig.suptitle(f"Per loss across datasets (mean over models)\n{subtitle(lab)}")
    if many:
        add_legend(fig, [ax], rows)
    return fig


def model_panels(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    rows, models, datasets = lab["losses"], short_names(lab["models"]), short_names(lab["datasets"])
    keep = rows_with_data(values, rows)
    rotate = needs_rotation(datasets)
    many = len(datasets) > 1
    fig, axes, ncols = figure_grid(len(models), datasets, rotate, sharex=not many,
                                   legend_labels=_legend_labels(values, rows) if many else (),
                                   row_labels=() if many else _legend_labels(values, rows),
                                   panel_h=3.0 if many else dot_height(len(keep)))
    for mi, ax in enumerate(axes):
        draw_lines(ax, datasets, [(rows[ri], values[mi, ri, :]) for ri in keep], rotate,
                   value_label=metric_title(lab["metric"]), first_col=mi % ncols == 0,
                   show_x=bottom_of_column(mi, len(models), ncols), errors=_errors(lab, keep, rows, (mi, slice(None))))
        ax.set_title(models[mi])
    fig.suptitle(f"Per model: every loss across datasets\n{subtitle(lab)}")
    if many:
        add_legend(fig, axes, rows)
    return fig


def heatmap(values: np.ndarray, lab: Mapping[str, Any], scale: float) -> Figure:
    """One panel per model: rows x (datasets + mean), values in the cells, best per column in bold."""
    models, datasets = short_names(lab["models"]), short_names(lab["datasets"])
    # Rows without a single result anywhere (not in the grid, or not run yet) are listed, not drawn.
    keep = rows_with_data(values, lab["losses"]) or list(range(len(lab["losses"])))
    hidden = [title(r) for i, r in enumerate(lab["losses"]) if i not in keep]
    rows = [lab["losses"][i] for i in keep]
    values = values[:, keep, :]
    full = np.concatenate([values, nanmean(values, axis=2)[:, :, None]], axis=2)   # datasets + mean column
    columns = [*datasets, "Mean"]
    fig, axes, height = _heatmap_figure(len(models), len(rows), columns)
    finite = full[np.isfinite(full)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    rotate = needs_rotation(columns, 0.62 * len(columns))
    image = None
    for mi in range(len(models)):
        marks = lab.get("marks")
        image = _heatmap_panel(axes[mi], full[mi], rows, columns, len(datasets), (vmin, vmax), rotate,
                               None if marks is None else np.asarray(marks)[mi][keep])
        axes[mi].set_title(models[mi])
    if image is not None:
        nrows = math.ceil(len(models) / (1 if len(models) <= 3 else 2))
        fig.colorbar(image, ax=axes[:len(models)], shrink=min(1.0, 6.0 / max(height, 1.0)) if nrows > 2 else 0.9,
                     label=f"{metric_title(lab['metric'])} x100", pad=0.02)
    what = "best per column and cells not significantly below it" if lab.get("marks") is not None else "best per column"
    fig.suptitle(f"Results matrix (bold: {what}; n/a: no complete trial)\n{subtitle(lab)}")
    if hidden:
        note = f"Not shown, no results for any model: {', '.join(hidden)}"
        fig.supxlabel("\n".join(textwrap.wrap(note, width=max(40, int(fig.get_figwidth() * 12)))), fontsize=9,
                      color="#555555")
    return fig


def _heatmap_figure(n_models: int, n_rows: int, columns: list[str]) -> tuple[Figure, list[Any], float]:
    ncols = 1 if n_models <= 3 else 2
    nrows = math.ceil(n_models / ncols)
    rotate = needs_rotation(columns, 0.62 * len(columns))
    cell_w, cell_h = 0.68, 0.36
    longest = max(len(c) for c in columns)
    width = (2.2 + cell_w * len(columns)) * ncols + 1.2
    height = (cell_h * n_rows + 0.9 + (min(1.4, 0.06 * longest) if rotate else 0.2)) * nrows + 0.9
    fig = Figure(figsize=(max(width, 6.0), height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_models:]:
        ax.set_visible(False)
    return fig, axes, height


def _heatmap_panel(ax: Any, block: np.ndarray, rows: list[str], columns: list[str], n_data: int,
                   limits: tuple[float, float], rotate: bool, marks: "np.ndarray | None" = None) -> Any:
    """One model's heatmap: ``block`` is (rows, datasets + mean)."""
    vmin, vmax = limits
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e6e6e6")
    image = ax.imshow(np.ma.masked_invalid(block), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    fontsize = 8.5 if len(columns) <= 10 else 7.5
    best = {c: np.nanmax(block[:, c]) for c in range(block.shape[1]) if np.isfinite(block[:, c]).any()}
    bold = (lambda ri, c: bool(marks[ri, c]) if c < marks.shape[1] else block[ri, c] == best.get(c)) \
        if marks is not None else (lambda ri, c: block[ri, c] == best.get(c))
    for ri in range(len(rows)):
        for c in range(block.shape[1]):
            value = block[ri, c]
            if not math.isfinite(value):
                ax.text(c, ri, "n/a", ha="center", va="center", fontsize=fontsize - 0.5, color="#808080")
                continue
            level = (value - vmin) / (vmax - vmin)
            ax.text(c, ri, f"{value:.1f}", ha="center", va="center", fontsize=fontsize,
                    color="black" if level > 0.55 else "white",
                    fontweight="bold" if bold(ri, c) else "normal")
    ax.axvline(n_data - 0.5, color="white", lw=3)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                       rotation_mode="anchor")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([title(r) for r in rows])
    for tick, row in zip(ax.get_yticklabels(), rows):
        tick.set_color(row_colour(row) if row != ZERO_SHOT else "#333333")
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


#: name -> builder, in the order the files are written.
BUILDERS = {"mean_over_datasets": mean_over_datasets, "loss_panels": loss_panels, "dataset_panels": dataset_panels,
            "loss_across_datasets": loss_across_datasets, "model_panels": model_panels, "heatmap": heatmap}
