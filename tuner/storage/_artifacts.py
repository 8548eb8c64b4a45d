"""Trial artifacts the dashboard shows: the training-loss curve (PNG) and the trial's config (JSON).

They go to an :class:`optuna.artifacts.FileSystemArtifactStore` beside the storage: ``<db dir>/artifacts``
for SQLite, ``./artifacts`` for a server database, or ``--artifacts DIR`` / ``$TUNER_ARTIFACTS``.
``python -m tuner dashboard`` opens the same folder, so the dashboard's trial page lists and previews
them. An artifact that cannot be written is logged and skipped: it never fails a trial.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from tuner.errors import TunerError
from tuner.jsonsafe import dumps
from tuner.storage._urls import default_artifacts_dir

ENV_ARTIFACTS = "TUNER_ARTIFACTS"
_log = logging.getLogger(__name__)


def resolve_artifacts_dir(url: str, artifacts: "str | os.PathLike | None" = None) -> Path:
    text = str(artifacts) if artifacts else os.environ.get(ENV_ARTIFACTS, "").strip()
    return Path(text).expanduser().resolve() if text else default_artifacts_dir(url)


def open_store(folder: Path, create: bool = True) -> Any:
    from optuna.artifacts import FileSystemArtifactStore

    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunerError(f"cannot create the artifacts folder {folder}: {exc.strerror or exc}; pass --artifacts "
                         "with a writable folder") from None
    return FileSystemArtifactStore(base_path=str(folder))


def loss_curve_png(path: Path, losses: Sequence[float], parts: Optional[dict[str, Sequence[float]]] = None,
                   title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    steps = range(1, len(losses) + 1)
    ax.plot(steps, list(losses), label="total", color="black", linewidth=1.5)
    for name, values in (parts or {}).items():
        if len(parts or {}) > 1 and len(values) == len(losses):
            ax.plot(steps, list(values), label=name, linewidth=1.0, alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def upload_trial_artifacts(store: Any, trial: Any, *, losses: Sequence[float],
                           parts: Optional[dict[str, Sequence[float]]], config: dict, title: str = "") -> list[str]:
    """Upload ``loss_curve.png`` and ``config.json`` to ``store`` for the (running) ``trial``."""
    from optuna.artifacts import upload_artifact

    ids: list[str] = []
    if store is None:
        return ids
    with tempfile.TemporaryDirectory(prefix="tuner-artifacts-") as tmp:
        files = []
        try:
            if losses:
                files.append(loss_curve_png(Path(tmp) / "loss_curve.png", losses, parts, title))
            config_path = Path(tmp) / "config.json"
            config_path.write_text(dumps(config, indent=2, sort_keys=True))
            files.append(config_path)
        except Exception as exc:  # noqa: BLE001 - artifacts never fail a trial
            _log.warning("trial %s: could not render artifacts: %s", trial.number, exc)
        for path in files:
            try:
                ids.append(upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial))
            except Exception as exc:  # noqa: BLE001
                _log.warning("trial %s: could not upload %s: %s", trial.number, path.name, exc)
    return ids
