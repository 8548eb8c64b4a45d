"""Tests for tuner.exporter.plots, Optuna's plots and ``tuner plot``.

Besides "the files exist", the figures are drawn and checked for what makes them readable: one
colour per loss row in every figure (the registry's), no two labels overlapping, titles naming
metric, split and protocol, ``n/a`` in empty heatmap cells, graceful 1-model / 1-dataset / all-NaN
cases, and the same with all 16 rows of a search over which losses are on.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from optuna.distributions import FloatDistribution  # noqa: E402

from tuner.cli import main  # noqa: E402
from tuner.errors import TunerError  # noqa: E402
from tuner.exporter import plots as P  # noqa: E402
from tuner.exporter.optuna_plots import optuna_plots  # noqa: E402

from test_export import toy_loss  # noqa: E402,F401 - the fixture that registers a toy loss

optuna.logging.set_verbosity(optuna.logging.WARNING)

MODELS = ["sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased", "princeton-nlp/sup-simcse-bert-base-uncased"]
DATASETS = ["sts12", "sts13", "stsb", "sickr"]
# The seed's rows and, after them, the other combinations of the four built-in losses (cos_mse switched
# on alongside others), with their titles: written out here, not derived from the registry.
SEED_ROWS = ["zero_shot", "cos_mse", "cosent", "ibn", "angle", "cosent+ibn", "cosent+angle", "ibn+angle",
             "cosent+ibn+angle"]
SEED_TITLES = ["Without Fine-Tuning", "Default Cosine Similarity", "CoSENT", "In-Batch Negatives", "Angle",
               "CoSENT+IBN", "CoSENT+Angle", "IBN+Angle", "CoSENT+IBN+Angle"]
ALL_ROWS = SEED_ROWS + ["cos_mse+cosent", "cos_mse+ibn", "cos_mse+angle", "cos_mse+cosent+ibn", "cos_mse+cosent+angle",
                        "cos_mse+ibn+angle", "cos_mse+cosent+ibn+angle"]
ALL_TITLES = SEED_TITLES + ["CosMSE+CoSENT", "CosMSE+IBN", "CosMSE+Angle", "CosMSE+CoSENT+IBN", "CosMSE+CoSENT+Angle",
                            "CosMSE+IBN+Angle", "CosMSE+CoSENT+IBN+Angle"]
TITLE_TO_ROW = {**dict(zip(ALL_TITLES, ALL_ROWS)), "Toy": "toy", "CoSENT+Toy": "cosent+toy"}


def realistic(models: int, datasets: int, seed: int = 0, nan_cells: int = 3, rows: int = 9) -> np.ndarray:
    """Zero-shot 0.62..0.80, fine-tuned rows a few points above, a few NaN cells."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.62, 0.80, size=(models, 1, datasets))
    gains = [0, 0.03, 0.06, 0.045, 0.055, 0.07, 0.075, 0.06, 0.08] if rows == 9 else \
        [0.0, *np.linspace(0.03, 0.08, rows - 1)[np.random.default_rng(1).permutation(rows - 1)]]
    gain = np.array(gains)[None, :, None]
    m = base + gain + rng.normal(0, 0.01, size=(models, rows, datasets))
    for _ in range(nan_cells):
        m[rng.integers(models), rng.integers(1, rows), rng.integers(datasets)] = np.nan
    return m


def labels(models=MODELS, datasets=DATASETS, **extra):
    return {"models": list(models), "datasets": list(datasets), "metric": "spearman", "split": "test",
            "protocol": "seed", "study": "sts-grid-quick", **extra}


def build_all(matrix: np.ndarray, lab: dict, only: tuple[str, ...] = P.FIGURES):
    """Every figure (or ``only`` these), drawn so that text extents are final, with its name."""
    checked = P.check_labels(matrix, lab)
    scale = P.scale_of(matrix)
    with matplotlib.rc_context(P.RC):
        for name in only:
            fig = P.BUILDERS[name](matrix * scale, checked, scale)
            FigureCanvasAgg(fig).draw()
            yield name, fig


def _overlap(a, b, slack: float = 1.0) -> bool:
    return (a.x0 + slack < b.x1 and b.x0 + slack < a.x1) and (a.y0 + slack < b.y1 and b.y0 + slack < a.y1)


def assert_readable(name: str, fig) -> None:
    renderer = fig.canvas.get_renderer()
    boxes = []                                                     # (what, bbox) of every label-like text
    for what, text in (("suptitle", fig._suptitle), ("supxlabel", fig._supxlabel)):
        if text is not None:
            boxes.append((what, text.get_window_extent(renderer)))
    for legend in fig.legends:
        boxes.append(("figure legend", legend.get_window_extent(renderer)))
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        if ax.get_legend() is not None:
            boxes.append((f"legend {i}", ax.get_legend().get_window_extent(renderer)))
        if ax.get_title():
            boxes.append((f"title {i}", ax.title.get_window_extent(renderer)))
        for axis in ("x", "y"):
            lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
            locs = ax.get_xticks() if axis == "x" else ax.get_yticks()
            labels_ = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
            ticks = [t for t, loc in zip(labels_, locs)                  # only the ticks that are drawn
                     if t.get_visible() and t.get_text() and lo - 1e-9 <= loc <= hi + 1e-9]
            extents = [t.get_window_extent(renderer) for t in ticks]
            angle = np.deg2rad(ticks[0].get_rotation()) if ticks else 0.0
            if axis == "x" and angle:
                # Parallel rotated labels: apart when their baselines are at least one text height apart.
                xs = sorted(ax.transData.transform([(loc, 0) for loc in ax.get_xticks() if lo <= loc <= hi])[:, 0])
                line_px = ticks[0].get_fontsize() * fig.dpi / 72
                assert all((b - a) * np.sin(angle) >= line_px for a, b in zip(xs, xs[1:])), f"{name}: x labels"
            else:
                for (ta, a), (tb, b) in itertools.combinations(zip(ticks, extents), 2):
                    assert not _overlap(a, b), f"{name}: tick labels {ta.get_text()!r} and {tb.get_text()!r} overlap"
            boxes += [(f"{axis}tick {i} {t.get_text()}" if not (axis == "x" and angle) else f"rotated {i}", e)
                      for t, e in zip(ticks, extents)]
    for (wa, a), (wb, b) in itertools.combinations(boxes, 2):
        if wa == wb and wa.startswith("rotated"):
            continue                                               # checked above in the rotated frame
        assert not _overlap(a, b, slack=2.0), f"{name}: {wa} overlaps {wb}"
    width, height = fig.bbox.width, fig.bbox.height
    for what, box in boxes:                                       # nothing cut off at the figure edge
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, f"{name}: {what} clipped"


def line_colours(fig) -> dict[str, str]:
    found: dict[str, str] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()
            if label in TITLE_TO_ROW:
                found.setdefault(label, to_hex(line.get_color()))
                assert to_hex(line.get_color()) == found[label]
        for container in ax.containers:                            # dot plots (errorbar)
            label = container.get_label()
            if label in TITLE_TO_ROW:
                colour = to_hex(container.lines[0].get_color())
                assert found.setdefault(label, colour) == colour
    return found


# --------------------------------------------------------------------------- figures
@pytest.mark.parametrize("shape", [(3, 4), (1, 4), (3, 1)], ids=["3x4", "1model", "1dataset"])
def test_figures_readable_and_colours_fixed(shape) -> None:
    n_models, n_data = shape
    matrix = realistic(n_models, n_data, nan_cells=2 if n_models * n_data > 2 else 0)
    for name, fig in build_all(matrix, labels(MODELS[:n_models], DATASETS[:n_data])):
        assert_readable(name, fig)
        for title, colour in line_colours(fig).items():
            assert colour == to_hex(P.row_colour(TITLE_TO_ROW[title])), f"{name}: {title}"
        if n_models == 1 and name in ("mean_over_datasets", "dataset_panels"):          # dot plots: rows on y
            shown = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_visible()]
            assert shown == SEED_TITLES, name
        text = " ".join(t.get_text() for t in [fig._suptitle, *[ax.title for ax in fig.axes]] if t is not None)
        assert "Spearman" in text and "test split" in text and "protocol: seed" in text, name


def test_sixteen_rows_have_distinct_styles() -> None:
    """Every row of a search over the four built-in losses keeps its own colour and marker."""
    colours = [P.row_colour(r) for r in ALL_ROWS]
    markers = [P.row_marker(r) for r in ALL_ROWS]
    assert len(set(colours)) == 16 and len(set(markers)) == 16
    assert colours[:5] == ["#4d4d4d", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]   # the registry's, tab10 first


@pytest.mark.parametrize("shape", [(2, 4), (1, 4), (3, 1), (2, 7)], ids=["2x4", "1model", "1dataset", "2x7"])
def test_sixteen_rows_readable(shape) -> None:
    """All 16 rows (zero-shot + 15 combinations): no overlap, legends list every row in matrix order."""
    n_models, n_data = shape
    matrix = realistic(n_models, n_data, nan_cells=0, rows=16)
    lab = labels((MODELS * 2)[:n_models], ([*DATASETS, "sts14", "sts15", "sts16"])[:n_data], losses=ALL_ROWS)
    for name, fig in build_all(matrix, lab):
        assert_readable(name, fig)
        for title, colour in line_colours(fig).items():
            assert colour == to_hex(P.row_colour(TITLE_TO_ROW[title])), f"{name}: {title}"
        legends = [*fig.legends, *[ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]]
        if name in ("mean_over_datasets", "dataset_panels") and n_models > 1 or \
                name in ("loss_across_datasets", "model_panels") and n_data > 1:
            (legend,) = legends
            assert [t.get_text() for t in legend.get_texts()] == ALL_TITLES, name
        if name == "heatmap":
            assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ALL_TITLES
        if name == "loss_panels":
            assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ALL_TITLES


def test_heatmap_values_and_na() -> None:
    matrix = realistic(2, 3, nan_cells=0)
    matrix[0, 1, 0] = np.nan
    matrix[:, 3, :] = np.nan                                       # a loss row with no trial at all
    matrix[1, 2, 2] = 0.9                                          # best of its column
    (fig,) = [f for n, f in build_all(matrix, labels(MODELS[:2], DATASETS[:3]), ("heatmap",))]
    ax = fig.axes[1]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert texts[(2, 2)].get_text() == "90.0" and texts[(2, 2)].get_fontweight() == "bold"
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == [*DATASETS[:3], "Mean"]
    # The row without any result is named under the heatmap instead of drawn as a band of n/a.
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [t for t in SEED_TITLES if t != "In-Batch Negatives"]
    assert "In-Batch Negatives" in fig._supxlabel.get_text()
    first = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in fig.axes[0].texts}
    assert first[(1, 0)] == "n/a" and first[(1, 3)] != "n/a"      # the mean skips the empty cell


def test_one_cell_and_all_nan_still_plot(tmp_path: Path) -> None:
    for name, fig in build_all(realistic(1, 1, nan_cells=0), labels(MODELS[:1], DATASETS[:1])):
        assert_readable(name, fig)
    written = P.plot_matrix(np.full((1, 9, 1), np.nan), labels(MODELS[:1], DATASETS[:1]), tmp_path, formats=("png",))
    assert len(written) == len(P.FIGURES)


def test_percent_matrix_is_not_scaled_again() -> None:
    matrix = realistic(1, 2, nan_cells=0) * 100                   # the seed stored x100 values
    (fig,) = [f for n, f in build_all(matrix, labels(MODELS[:1], DATASETS[:2]), ("heatmap",))]
    values = [float(t.get_text()) for t in fig.axes[0].texts if t.get_text() != "n/a"]
    assert 50 < min(values) and max(values) < 100


def test_check_labels_errors_are_one_line() -> None:
    with pytest.raises(TunerError) as err:
        P.check_labels(np.zeros((2, 9, 3)), labels(MODELS[:3], DATASETS[:3]))
    assert "shape (2, 9, 3)" in str(err.value) and "3 models x 9 loss rows x 3 datasets" in str(err.value)
    with pytest.raises(TunerError, match="expected 3 axes"):
        P.check_labels(np.zeros((9, 3)), labels(MODELS[:1], DATASETS[:3]))
    with pytest.raises(TunerError, match="duplicate datasets label"):
        P.check_labels(np.zeros((1, 9, 2)), labels(MODELS[:1], ["stsb", "stsb"]))


def test_toy_loss_rows_in_every_figure(toy_loss, tmp_path: Path) -> None:
    """A loss added through the registry alone gets its rows, title, colour and marker in the figures."""
    from test_export import make_toy_study

    from tuner.exporter import build_matrix

    study = make_toy_study()
    matrix = build_matrix(study.get_trials(deepcopy=False), study.user_attrs, "test", study_name="toy")
    assert list(matrix.rows)[-2:] == ["toy", "cosent+toy"]
    shown = ["Without Fine-Tuning", "CoSENT", "Toy", "CoSENT+Toy"]           # the rows with data
    figures = dict(build_all(matrix.values, matrix.labels()))
    for name, fig in figures.items():
        assert_readable(name, fig)
    dots = figures["mean_over_datasets"].axes[0]                            # one model: a dot plot
    assert [t.get_text() for t in dots.get_yticklabels()] == shown
    toy = next(c for c in dots.containers if c.get_label() == "Toy")
    assert to_hex(toy.lines[0].get_color()) == "#00ced1" and toy.lines[0].get_marker() == "H"
    assert [t.get_text() for t in figures["heatmap"].axes[0].get_yticklabels()] == shown
    assert [ax.get_title() for ax in figures["loss_panels"].axes if ax.get_visible()] == shown
    written = P.plot_matrix(matrix, None, tmp_path, formats=("svg",))
    assert len(written) == len(P.FIGURES) and "CoSENT+Toy" in (tmp_path / "plots" / "heatmap.svg").read_text()


# --------------------------------------------------------------------------- Optuna's plots
def test_optuna_plots_need_two_trials(tmp_path: Path) -> None:
    """(All four plots of a real search: test_export_with_plots_end_to_end.)"""
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"w_cosent": 0.5}, distributions={"w_cosent": FloatDistribution(0, 1)},
                                              value=0.7, user_attrs={"model": "m", "scores.dev.stsb": 0.7}))
    written, why = optuna_plots(study.get_trials(deepcopy=False), study.directions, tmp_path, "tpe")
    assert [p.name for p in written] == ["optuna_optimization_history.png"]
    assert set(why) == {"param_importances", "parallel_coordinate", "slice"}


def test_export_with_plots_end_to_end(tmp_path: Path) -> None:
    from test_export import make_tpe_study

    from tuner.exporter import export_study

    result = export_study(make_tpe_study(None, n=5), tmp_path, top_k=3)
    names = {p.name for p in result.plots}
    assert {f"{f}.{ext}" for f in P.FIGURES for ext in ("png", "svg")} <= names
    assert {f"optuna_{n}.png" for n in ("optimization_history", "param_importances", "parallel_coordinate",
                                        "slice")} <= names, result.skipped_plots
    assert result.skipped_plots == {}
    assert all((tmp_path / "plots" / n).stat().st_size > 5000 for n in names)


# --------------------------------------------------------------------------- ``tuner plot``
def test_cli_plot_bare_seed_matrix(tmp_path: Path, capsys) -> None:
    path = tmp_path / "seed.npy"
    np.save(path, realistic(2, 2) * 100)                            # the seed's layout, x100
    out = tmp_path / "out"
    code = main(["plot", "--matrix", str(path), "--models", "all-MiniLM-L6-v2", "bert-base-uncased",
                 "--datasets", "stsb,sickr", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    payload = json.loads(capsys.readouterr().out)
    assert payload["shape"] == [2, 9, 2]
    written = [Path(p) for p in payload["plots"]]
    assert sorted(p.name for p in written) == sorted(f"{f}.{ext}" for f in P.FIGURES for ext in ("png", "svg"))
    for path in written:
        assert path.parent == out / "plots" and path.stat().st_size > 5000
    assert (out / "plots" / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (out / "plots" / "heatmap.svg").read_text()
    assert "<svg" in svg[:2000] and "protocol: seed" in svg                # titles default to the seed's protocol


@pytest.mark.parametrize("argv, message", [
    (["--models", "a", "b", "c", "--datasets", "x,y"], "has shape (2, 9, 2) (models, loss rows, datasets) but the "
                                                       "labels give 3 models x 9 loss rows x 2 datasets"),
    (["--models", "a", "b"], "give --datasets too"),
    ([], "no labels for"),
    (["--labels", "missing.json"], "labels file missing.json does not exist"),
], ids=["mismatch", "no-datasets", "no-labels", "missing-labels"])
def test_cli_plot_errors(argv, message, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "seed.npy", np.zeros((2, 9, 2)))
    assert main(["plot", "--matrix", "seed.npy", *argv, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out" / "plots").exists()


def test_cli_plot_bad_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.npy").write_text("not numpy")
    assert main(["plot", "--matrix", str(tmp_path / "bad.npy"), "--models", "a", "--datasets", "b",
                 "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["plot", "--matrix", str(tmp_path / "none.npy"), "--models", "a", "--datasets", "b",
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_plot_uses_export_labels(tmp_path: Path, capsys) -> None:
    """An export folder re-plots from its matrix.npy alone (labels from matrix.json beside it)."""
    np.save(tmp_path / "matrix.npy", realistic(1, 1, nan_cells=0))
    (tmp_path / "matrix.json").write_text(json.dumps(labels(MODELS[:1], DATASETS[:1], losses=SEED_ROWS,
                                                            split="dev", protocol="standard")))
    out = tmp_path / "again"
    assert main(["plot", "--matrix", str(tmp_path / "matrix.npy"), "--out", str(out)]) == 0
    assert "12 files written" in capsys.readouterr().out
    assert "dev split" in (out / "plots" / "heatmap.svg").read_text()
