"""Optuna's own plots of a non-grid study, drawn from the export's trial snapshot.

Optimization history, parameter importances (the on/off params ``use_<loss>`` included: they are
sampled in every trial), parallel coordinate and slice plots via
``optuna.visualization.matplotlib``, saved as ``<out>/plots/optuna_<name>.png``. They are drawn from
an in-memory study holding the snapshot's trials under their own numbers (pruned and failed
trials included; the history plot marks them), so "trial 41" sits at x = 41.
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
    """An in-memory study holding the snapshot's trials **under their own numbers**.

    An in-memory study numbers added trials 0, 1, 2, ...; so every trial of the snapshot is added
    in number order (complete, pruned and failed ones as they are), a trial still running or waiting
    becomes a FAIL placeholder, and a number missing from the snapshot too: "trial 41" stays at x = 41.
    """
    import optuna

    state = optuna.trial.TrialState
    study = optuna.create_study(directions=list(directions), study_name=study_name)
    by_number = {t.number: t for t in trials}
    for number in range(max(by_number, default=-1) + 1):
        trial = by_number.get(number)
        if trial is None or trial.state not in (state.COMPLETE, state.PRUNED, state.FAIL):
            trial = optuna.trial.create_trial(state=state.FAIL)
        study.add_trial(trial)
    return study


def mark_unfinished(ax: Any, trials: Sequence[Any]) -> None:
    """On the history plot, mark pruned trials (x at their last reported value, or a tick at the bottom when
    they reported none) and failed ones (a tick at the bottom), at their own trial numbers."""
    import optuna

    state = optuna.trial.TrialState
    pruned = [t for t in trials if t.state == state.PRUNED]
    with_value = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in pruned
                  if t.intermediate_values]
    if with_value:
        ax.scatter([n for n, _ in with_value], [v for _, v in with_value], marker="x", color="#888888",
                   label="pruned (last reported value)", zorder=4)
    ticks = {"pruned, nothing reported": [t.number for t in pruned if not t.intermediate_values],
             "failed or not finished": [t.number for t in trials if t.state not in (state.COMPLETE, state.PRUNED)]}
    for (label, numbers), colour in zip(ticks.items(), ("#888888", "#d62728")):
        if numbers:
            ax.scatter(numbers, [0.02] * len(numbers), marker="|", s=120, color=colour, label=label,
                       transform=ax.get_xaxis_transform(), zorder=4)
    if with_value or any(ticks.values()):
        ax.legend(loc="best", fontsize=8)


def history_axes(trials: Sequence[Any], directions: Sequence[Any], study_name: Optional[str] = None,
                 target_name: str = "Objective Value") -> Any:
    """Optuna's optimization history of ``trials`` (every state), at the study's own trial numbers."""
    from optuna.visualization import matplotlib as ovm

    ax = ovm.plot_optimization_history(snapshot_study(trials, directions, study_name), target_name=target_name)
    mark_unfinished(ax, trials)
    return ax


def varied_params(trials: Sequence[Any]) -> list[str]:
    """Params that take more than one value over ``trials`` (the others make empty plots)."""
    names = sorted({p for t in trials for p in t.params})
    return [name for name in names
            if len({json.dumps(t.params.get(name), default=str) for t in trials if name in t.params}) > 1]


def _builders(study: Any, varied: list[str], target_name: str) -> dict[str, Callable[[], Any]]:
    import optuna
    from optuna.visualization import matplotlib as ovm

    return {
        "optimization_history": lambda: _history(study, target_name),
        "param_importances": lambda: ovm.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0),
            target_name=target_name),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, params=varied or None,
                                                                    target_name=target_name),
        "slice": lambda: ovm.plot_slice(study, params=varied or None, target_name=target_name),
    }


def _history(study: Any, target_name: str) -> Any:
    from optuna.visualization import matplotlib as ovm

    ax = ovm.plot_optimization_history(study, target_name=target_name)
    mark_unfinished(ax, study.get_trials(deepcopy=False))
    return ax


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
        every = trials
        trials = [t for t in every if t.state == optuna.trial.TrialState.COMPLETE]
        varied = varied_params(trials)
        builders = _builders(snapshot_study(every, directions, study_name), varied, target_name)
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
