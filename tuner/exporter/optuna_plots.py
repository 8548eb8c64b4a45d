"""Optuna's own plots of a non-grid study, drawn from the export's trial snapshot.

Optimization history, parameter importances (the on/off params ``use_<loss>`` included: they are
sampled in every trial), parallel coordinate and slice plots via
``optuna.visualization.matplotlib``, saved as ``<out>/plots/optuna_<name>.png``. They are drawn from
an in-memory study holding exactly the snapshot's trials, so they match the matrix.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tuner.exporter.files import write_file

OPTUNA_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")
_NEED_PARAMS = ("param_importances", "parallel_coordinate", "slice")


def snapshot_study(trials: Sequence[Any], directions: Sequence[Any], study_name: Optional[str]) -> Any:
    """An in-memory study holding exactly ``trials`` (so Optuna's plots see the export's snapshot)."""
    import optuna

    study = optuna.create_study(directions=list(directions), study_name=study_name)
    study.add_trials(list(trials))
    return study


def varied_params(trials: Sequence[Any]) -> list[str]:
    """Params that take more than one value over ``trials`` (the others make empty plots)."""
    names = sorted({p for t in trials for p in t.params})
    return [name for name in names
            if len({json.dumps(t.params.get(name), default=str) for t in trials if name in t.params}) > 1]


def _builders(study: Any, varied: list[str], target_name: str) -> dict[str, Callable[[], Any]]:
    import optuna
    from optuna.visualization import matplotlib as ovm

    return {
        "optimization_history": lambda: ovm.plot_optimization_history(study, target_name=target_name),
        "param_importances": lambda: ovm.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0),
            target_name=target_name),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, params=varied or None,
                                                                    target_name=target_name),
        "slice": lambda: ovm.plot_slice(study, params=varied or None, target_name=target_name),
    }


def _png(name: str, axes: Any, n_varied: int, title: str) -> bytes:
    """PNG bytes of one Optuna plot, sized for its content."""
    flat = np.atleast_1d(axes).ravel()
    fig = flat[0].figure
    bars = len(flat[0].get_yticks())        # importances: only params every trial has (conditional ones are left out)
    size = {"optimization_history": (9, 5), "param_importances": (9, 0.45 * bars + 2.5),
            "parallel_coordinate": (max(10, 1.4 * n_varied + 3), 6),
            "slice": (max(8, 3.3 * len(flat)), 4.6)}[name]
    fig.set_size_inches(*size)
    if name == "slice":
        for ax in flat:
            for label in ax.get_xticklabels():
                label.set_rotation(30)
                label.set_ha("right")
    fig.suptitle(title)
    # No constrained layout: it fails on the parallel-coordinate colorbar; the tight bbox does not.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    return buffer.getvalue()


def optuna_plots(trials: Sequence[Any], directions: Sequence[Any], out_dir: Path | str,
                 study_name: Optional[str] = None, target_name: str = "Objective Value") -> tuple[list[Path], dict[str, str]]:
    """PNG files ``<out_dir>/plots/optuna_<name>.png``; returns (written, {plot: why it was skipped})."""
    import matplotlib.pyplot as plt
    import optuna

    if len(directions) != 1:
        return [], {name: "multi-objective study" for name in OPTUNA_PLOTS}
    written: list[Path] = []
    skipped: dict[str, str] = {}
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        varied = varied_params(trials)
        builders = _builders(snapshot_study(trials, directions, study_name), varied, target_name)
        title = f"{f'study {study_name}: ' if study_name else ''}{target_name}"
        for name, build in builders.items():
            if name in _NEED_PARAMS and len(trials) < 2:
                skipped[name] = "needs at least 2 complete trials"
                continue
            if name in _NEED_PARAMS and not varied:
                skipped[name] = "no parameter takes more than one value"
                continue
            fig = None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    axes = build()
                    fig = np.atleast_1d(axes).ravel()[0].figure
                    png = _png(name, axes, len(varied), title)
                written.append(write_file(Path(out_dir) / "plots" / f"optuna_{name}.png", png))
            except Exception as exc:  # noqa: BLE001 - one failing Optuna plot must not stop the export
                if type(exc).__name__ == "TunerError":
                    raise
                skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
            finally:
                if fig is not None:
                    plt.close(fig)
    finally:
        optuna.logging.set_verbosity(previous)
    return written, skipped
