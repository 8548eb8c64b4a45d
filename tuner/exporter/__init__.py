"""Export a study: results matrix (``.npy`` + ``.json``), tables, plots and, for non-grid studies,
a leaderboard, the best config and Optuna's plots.

Public API::

    export_study(study, out_dir, split="test", storage_url=None) -> ExportResult
    build_matrix(trials, study_attrs, split="test", *, study_name=None, models=None, datasets=None) -> Matrix
    plot_matrix(matrix, labels, out_dir) -> list[Path]          # PNG + SVG into <out_dir>/plots/

``export_study`` reads the study's COMPLETE trials **once** and builds every file from that
snapshot, so workers may keep writing while it runs. It never writes to the study.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from tuner.errors import TunerError
from tuner.exporter.files import check_out_dir, json_dumps, mask_text, mask_url, write_file
from tuner.exporter.matrix import Matrix, build_matrix
from tuner.exporter.plots import check_labels, plot_matrix
from tuner.exporter.tables import results_csv, results_frame, results_markdown
from tuner.exporter.toml import toml_dumps
from tuner.exporter.trials import SPLITS, metric_title
from tuner.storage import open_storage

__all__ = ["ExportResult", "Matrix", "build_matrix", "check_labels", "export_study", "mask_url", "open_study",
           "plot_matrix", "results_frame", "results_markdown", "toml_dumps"]


@dataclass
class ExportResult:
    """What an export wrote; :meth:`to_dict` is the ``--json`` summary."""

    study: str
    out_dir: Path
    split: str
    matrix: Matrix
    files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    skipped_plots: dict[str, str] = field(default_factory=dict)
    skipped_files: dict[str, str] = field(default_factory=dict)    # file -> why it was not written
    storage: Optional[str] = None           # masked

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.matrix.shape

    @property
    def filled(self) -> int:
        return self.matrix.filled

    def to_dict(self) -> dict[str, Any]:
        m = self.matrix
        return {
            "study": self.study, "storage": self.storage, "out": str(self.out_dir), "split": self.split,
            "metric": m.metric, "protocol": m.protocol, "sampler": "grid" if m.is_grid else "not grid",
            "shape": list(self.shape), "filled_cells": self.filled, "cells": int(m.values.size),
            "complete_trials": m.n_trials, "cells_chosen_by_dev": len(m.choices),
            "skipped_trials": len(m.skipped),
            "files": {k: str(v) for k, v in self.files.items()}, "plots": [str(p) for p in self.plots],
            "skipped_plots": self.skipped_plots, "skipped_files": self.skipped_files,
        }


def open_study(name: str, storage_url: Optional[str] = None) -> tuple[Any, Any]:
    """``(study, handle)`` for an existing study, opened with :func:`tuner.storage.open_storage` (must exist,
    no heartbeats: an export only reads). Close ``handle`` when done. One-line TunerErrors: unreachable
    storage, missing SQLite file, unknown study (listing the studies that are there).
    """
    import optuna


    handle = open_storage(storage_url, heartbeat_interval=None, grace_period=None, must_exist=True)
    try:
        names = sorted(optuna.study.get_all_study_names(handle.storage))
        if name not in names:
            raise TunerError(f"no study '{name}' in storage {handle.masked}; studies there: "
                             f"{', '.join(names) if names else 'none'}")
        return optuna.load_study(study_name=name, storage=handle.storage), handle
    except TunerError:
        handle.close()
        raise
    except Exception as exc:  # noqa: BLE001 - driver/connection errors: one masked line
        handle.close()
        first = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise TunerError(f"cannot read studies from {handle.masked}: {first}; check --storage") from None


def _storage_url_of(study: Any) -> Optional[str]:
    storage = getattr(study, "_storage", None)
    for obj in (storage, getattr(storage, "_backend", None)):
        url = getattr(obj, "url", None)
        if isinstance(url, str):
            return url
    return None


def export_study(study: Union[Any, str], out_dir: Union[str, Path], split: str = "test",
                 storage_url: Optional[str] = None, *, top_k: int = 10, plots: bool = True) -> ExportResult:
    """Write the export of ``study`` (an ``optuna.Study``, or a study name with ``storage_url``) into ``out_dir``.

    Files: ``matrix.npy``, ``matrix.json``, ``results.csv``, ``results.md``, ``plots/*.png|svg``; for
    non-grid studies also ``leaderboard.csv|md``, ``best_finetune.json``, ``best_study.toml`` and
    ``plots/optuna_*.png``. ``split`` picks which scores fill the matrix; choices are always by dev.
    A study name is opened with :func:`open_study` (``storage_url`` as for ``--storage``: default
    ``$TUNER_STORAGE``, then ``sqlite:///tuner.db``).
    """
    import optuna

    if split not in SPLITS:
        raise TunerError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(study, str):
        study, handle = open_study(study, storage_url)
        try:
            return export_study(study, out_dir, split, handle.url, top_k=top_k, plots=plots)
        finally:
            handle.close()
    storage_url = storage_url or _storage_url_of(study)
    out = check_out_dir(Path(out_dir))
    name = study.study_name

    # The one read: every file below is built from this snapshot.
    every = study.get_trials(deepcopy=False)     # all states: the Optuna plots keep the study's trial numbers
    trials = [t for t in every if t.state == optuna.trial.TrialState.COMPLETE]
    study_attrs = dict(study.user_attrs)
    directions = list(study.directions)
    if not trials:
        raise TunerError(f"study '{name}' has no COMPLETE trials yet; run `python -m tuner optimize --study {name}` "
                         f"first")

    matrix = build_matrix(trials, study_attrs, split, study_name=name)
    result = ExportResult(study=name, out_dir=out, split=split, matrix=matrix, storage=mask_url(storage_url))
    buffer = io.BytesIO()
    np.save(buffer, matrix.values.astype(np.float64), allow_pickle=False)
    result.files["matrix"] = write_file(out / "matrix.npy", buffer.getvalue())
    result.files["matrix_json"] = write_file(out / "matrix.json", json_dumps(matrix.to_json(storage_url)))
    result.files["results_csv"] = write_file(out / "results.csv", results_csv(matrix))
    result.files["results_md"] = write_file(out / "results.md", results_markdown(matrix))
    if plots:
        result.plots += plot_matrix(matrix, matrix.labels(), out)
    if not matrix.is_grid:
        _export_search(result, trials, study_attrs, directions, top_k, plots, every)
    return result


def _export_search(result: ExportResult, trials: list, study_attrs: dict, directions: list, top_k: int,
                   plots: bool, every: Optional[list] = None) -> None:
    """The non-grid extras: leaderboard, the best trial's command and refine study, Optuna's plots."""
    from tuner.exporter.best import LegacyTrial, best_finetune, best_study_toml
    from tuner.exporter.leaderboard import leaderboard_frame, leaderboard_markdown, ranked_trials
    from tuner.exporter.optuna_plots import optuna_plots

    out, name, metric = result.out_dir, result.study, result.matrix.metric
    direction = directions[0].name.lower() if directions else "maximize"
    board = leaderboard_frame(trials, direction, top_k)
    result.files["leaderboard_csv"] = write_file(out / "leaderboard.csv", board.to_csv(index=False, float_format="%.6g"))
    result.files["leaderboard_md"] = write_file(out / "leaderboard.md", leaderboard_markdown(board, metric, name, top_k))
    ranked = ranked_trials(trials, direction)
    if ranked:
        try:
            best_json = json_dumps(best_finetune(ranked[0], name))
            best_toml = best_study_toml(ranked[0], study_attrs, name)
        except LegacyTrial as exc:
            result.skipped_files.update({"best_finetune.json": str(exc), "best_study.toml": str(exc)})
        else:
            result.files["best_finetune"] = write_file(out / "best_finetune.json", best_json)
            result.files["best_study"] = write_file(out / "best_study.toml", best_toml)
    if plots:
        written, skipped = optuna_plots(every if every is not None else trials, directions, out, name,
                                        target_name=f"mean dev {metric_title(metric)}")
        result.plots += written
        result.skipped_plots.update(skipped)
