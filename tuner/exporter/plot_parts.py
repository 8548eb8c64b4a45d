"""Building blocks of the result figures: panel grids, line and dot plots, the legend, labels.

Colours and markers come from the loss registry (:func:`tuner.exporter.rows.style`), so a row keeps
its look in every figure and a newly registered loss brings its own. Layout rules that keep 9 to 16
rows readable:

* the legend goes into a free slot of the panel grid when it fits there (one column, or two for
  many rows on a wide slot), to the right of a single panel, else below the panels in as many
  columns as the width allows;
* a dot plot (one model or one dataset: rows on the y axis) grows with the number of rows.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from tuner.exporter.rows import ZERO_SHOT, style, title
from tuner.exporter.trials import metric_title

RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
      "legend.fontsize": 9, "figure.titlesize": 12, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
      "axes.spines.right": False, "svg.hashsalt": "tuner"}
_MAX_LABEL = 24
_ENTRY_H = 0.23          # inches per legend entry (9 pt text)
_CHAR_W = 0.068          # inches per legend character (9 pt text)


def row_colour(row: str) -> str:
    return style(row)[0]


def row_marker(row: str) -> str:
    return style(row)[1]


def short_names(names: Sequence[str]) -> list[str]:
    """Display names: basename of paths / hub ids, shortened, kept unique."""
    def cut(text: str) -> str:
        return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 9] + "…" + text[-8:]

    base = [str(n).rstrip("/").rsplit("/", 1)[-1] or str(n) for n in names]
    shown = base if len(set(base)) == len(base) else [str(n) for n in names]
    shown = [cut(s) for s in shown]
    return shown if len(set(shown)) == len(shown) else [f"{i + 1}:{s}" for i, s in enumerate(shown)]


def scale_of(values: np.ndarray) -> float:
    """Scores are 0..1 internally; a seed matrix already in percent is left as is."""
    finite = values[np.isfinite(values)]
    return 100.0 if finite.size == 0 or float(np.max(np.abs(finite))) <= 1.0 + 1e-9 else 1.0


def nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def nanstd(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(a, axis=axis)


def subtitle(lab: Mapping[str, Any]) -> str:
    parts = [f"{metric_title(lab['metric'])} x100", f"{lab['split']} split", f"protocol: {lab['protocol']}"]
    if lab.get("study"):
        parts.append(f"study: {lab['study']}")
    return " · ".join(parts)


def rows_with_data(values: np.ndarray, rows: Sequence[str]) -> list[int]:
    return [ri for ri in range(len(rows)) if np.isfinite(values[:, ri, :]).any()]


def grid_shape(n_panels: int) -> tuple[int, int]:
    ncols = 1 if n_panels == 1 else 2 if n_panels in (2, 4) else 3 if n_panels <= 6 or n_panels == 9 else 4
    return math.ceil(n_panels / ncols), ncols


def dot_height(n_rows: int) -> float:
    """Panel height (inches) of a dot plot with ``n_rows`` rows on its y axis."""
    return max(3.0, 0.26 * n_rows + 0.9)


def legend_width(labels: Sequence[str]) -> float:
    """Width (inches) of a one-column legend of ``labels``."""
    return 0.75 + _CHAR_W * max((len(t) for t in labels), default=4)


def figure_grid(n_panels: int, tick_labels: Sequence[str], rotate: bool, *, legend_labels: Sequence[str] = (),
                row_labels: Sequence[str] = (), panel_w: float = 4.2, panel_h: float = 3.0, sharey: bool = True,
                sharex: bool = False) -> tuple[Figure, list[Any], int]:
    """A grid of panels with room for a legend of ``legend_labels`` (none when empty) and, for dot plots,
    for the ``row_labels`` on the first column's y axis; see the module docstring."""
    nrows, ncols = grid_shape(n_panels)
    n_entries = len(legend_labels)
    one_col = legend_width(legend_labels)
    slot_cols = _slot_columns(n_entries, one_col, panel_w, panel_h) if nrows * ncols > n_panels else 0
    use_slot = n_entries > 0 and slot_cols > 0
    longest = max((len(t) for t in tick_labels), default=4)
    extra = min(1.8, 0.055 * longest) if rotate else 0.0
    right = n_entries > 0 and n_panels == 1
    width = panel_w * ncols + (one_col + 0.3 if right else 0.3) + _CHAR_W * max((len(t) for t in row_labels), default=0)
    below = n_entries > 0 and not use_slot and not right
    legend_cols = max(1, min(n_entries, int(width // one_col))) if n_entries else 1
    height = (panel_h + extra) * nrows + 0.9
    if below:
        height += _ENTRY_H * math.ceil(n_entries / legend_cols) + 0.45
    if right:
        height = max(height, (n_entries + 2) * _ENTRY_H + 0.9)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, sharex=sharex, squeeze=False).ravel().tolist()
    for i, ax in enumerate(axes):
        if i >= n_panels:
            ax.set_visible(False)
        elif sharex and bottom_of_column(i, n_panels, ncols):
            ax.xaxis.set_tick_params(labelbottom=True)   # the panel above an empty slot keeps its labels
    fig._tuner_legend = (("slot", (axes[n_panels], slot_cols)) if use_slot else  # type: ignore[attr-defined]
                         ("right", axes[0]) if right else ("below", legend_cols))
    return fig, axes[:n_panels], ncols


def _slot_columns(n_entries: int, col_w: float, panel_w: float, panel_h: float) -> int:
    """Legend columns that fit a free panel slot (1 or 2), 0 when the legend does not fit there."""
    for ncol in (1, 2):
        if (math.ceil(n_entries / ncol) + 1.5) * _ENTRY_H <= panel_h and ncol * col_w <= panel_w + 0.3:
            return ncol
    return 0


def needs_rotation(labels: Sequence[str], panel_w: float = 4.2) -> bool:
    """Rotate tick labels when the longest one is wider than its category's share of the axis."""
    if len(labels) < 2:
        return False
    return max(len(t) for t in labels) * 0.075 > 0.85 * panel_w / len(labels)


def bottom_of_column(index: int, n_panels: int, ncols: int) -> bool:
    return index + ncols >= n_panels


def draw_lines(ax: Any, xlabels: Sequence[str], series: Sequence[tuple[str, np.ndarray]], rotate: bool, *,
               value_label: str, x_name: Optional[str] = None, first_col: bool = True, show_x: bool = True,
               bands: Optional[Mapping[str, np.ndarray]] = None,
               reference: Optional[tuple[str, np.ndarray]] = None,
               errors: Optional[Mapping[str, np.ndarray]] = None) -> None:
    """One line per row over categorical x; a dot plot (rows on y, scores on x) when there is one x.

    ``errors``: per row, the std over seeds of each point (NaN: one seed), drawn as error bars."""
    if len(xlabels) == 1:
        draw_dots(ax, series, errors if errors else bands, reference, row_labels=first_col and len(series) > 1)
        if show_x:
            ax.set_xlabel(f"{value_label} · {xlabels[0]}")
        return
    x = np.arange(len(xlabels))
    if reference is not None and np.isfinite(reference[1]).any():
        ax.plot(x, reference[1], color=row_colour(reference[0]), ls="--", lw=1.2, alpha=0.8, zorder=1)
    for row, y in series:
        if not np.isfinite(y).any():
            continue
        ax.plot(x, y, color=row_colour(row), marker=row_marker(row), ms=5, lw=1.8,
                ls="--" if row == ZERO_SHOT else "-", label=title(row), zorder=3)
        if bands is not None and row in bands:
            _band(ax, x, y, bands[row], row_colour(row))
        if errors is not None and row in errors:
            ok = np.isfinite(y) & np.isfinite(errors[row])
            if ok.any():
                ax.errorbar(x[ok], y[ok], yerr=errors[row][ok], fmt="none", ecolor=row_colour(row), capsize=3,
                            zorder=3)
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


def _band(ax: Any, x: np.ndarray, y: np.ndarray, spread: np.ndarray, colour: str) -> None:
    lo, hi = y - spread, y + spread
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.sum() >= 2:
        ax.fill_between(x, lo, hi, where=ok, color=colour, alpha=0.18, lw=0, zorder=2)
    elif ok.any():
        ax.errorbar(x[ok], y[ok], yerr=spread[ok], fmt="none", ecolor=colour, capsize=3)


def draw_dots(ax: Any, series: Sequence[tuple[str, np.ndarray]], bands: Optional[Mapping[str, np.ndarray]],
              reference: Optional[tuple[str, np.ndarray]], row_labels: bool = True) -> None:
    """Rows on y, one dot per row (its score on x), ``n/a`` where a row has no score."""
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
        ax.errorbar([value], [i], xerr=None if err is None else [err], fmt=row_marker(row), ms=7,
                    color=row_colour(row), capsize=3, label=title(row), zorder=3)
        ax.annotate(f"{value:.1f}", (value, i), xytext=(6, 4), textcoords="offset points", fontsize=8,
                    color="#333333")
    if reference is not None and np.isfinite(reference[1][0]):
        ax.axvline(float(reference[1][0]), color=row_colour(reference[0]), ls="--", lw=1.2, alpha=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([title(r) for r in rows])
    if not row_labels:  # hide, not clear: a shared y axis shares its tick labels with the first column
        ax.tick_params(axis="y", length=0, labelleft=False)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.margins(x=0.15)


def add_legend(fig: Figure, axes: Sequence[Any], rows: Sequence[str]) -> None:
    """One legend per figure, rows in matrix order, where :func:`figure_grid` made room for it."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ordered = [(title(r), handles[title(r)]) for r in rows if title(r) in handles]
    if not ordered:
        return
    where, target = getattr(fig, "_tuner_legend", ("below", 3))
    handles_, labels_ = [h for _, h in ordered], [t for t, _ in ordered]
    if where == "slot":
        slot, ncol = target
        slot.set_visible(True)
        slot.axis("off")
        slot.legend(handles_, labels_, loc="center", title="Loss", frameon=False, ncol=ncol)
    elif where == "right":
        target.legend(handles_, labels_, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                      title="Loss", frameon=False)
    else:
        fig.legend(handles_, labels_, loc="outside lower center", ncol=target, title="Loss", frameon=False)
