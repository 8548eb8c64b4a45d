"""The Python API: the same operations as the CLI, returning pandas / Optuna objects.

The CLI subcommands are thin layers over these functions.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from tuner.engine import DataSpec, FinetuneOutcome, evaluate_model, run_finetune
from tuner.errors import TunerError
from tuner.losses import DEFAULT_TAUS
from tuner.train import TrainConfig

_BUDGET_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {"weights", "taus", "pooling"}


def evaluate(model: Any = "all-MiniLM-L6-v2", datasets: "DataSpec | Sequence[DataSpec]" = "stsb", *,
             pooling: "str | int | None" = None, split: str = "test", protocol: Optional[str] = None,
             classification_protocol: Optional[str] = None, data_dir: "str | os.PathLike | None" = None,
             batch_size: int = 64, max_seq_length: int = 128, device: Optional[str] = None) -> pd.DataFrame:
    """Score a model (hub id, local folder or a loaded :class:`tuner.models.Encoder`) on datasets.

    ``datasets``: built-in names (``"stsb"``, ``"sts12,sts13"``, ``"MR"``…), file paths or
    DataFrames with ``sentence1, sentence2, score`` (STS) or ``sentence, label`` (classification).
    Returns one row per dataset: ``dataset, task, split, metric, score, pearson, n, protocol, …``
    (scores in 0..1). Same as ``tuner evaluate``.
    """
    return evaluate_model(model, datasets, pooling=pooling, split=split, protocol=protocol,
                          classification_protocol=classification_protocol, data_dir=data_dir,
                          batch_size=batch_size, max_seq_length=max_seq_length, device=device)


def finetune(model: Any = "all-MiniLM-L6-v2", train: "DataSpec | Sequence[DataSpec]" = "stsb",
             eval: "DataSpec | Sequence[DataSpec] | None" = None, *, weights: Optional[Mapping[str, float]] = None,
             taus: Optional[Mapping[str, float]] = None, pooling: "str | int | None" = None,
             output: "str | os.PathLike | None" = None, protocol: str = "standard",
             data_dir: "str | os.PathLike | None" = None, max_train_examples: Optional[int] = None,
             device: Optional[str] = None, progress: bool = True, **budget: Any) -> FinetuneOutcome:
    """Fine-tune ``model`` with ``sum(weights[k] * loss_k)`` and score dev and test.

    ``weights`` keys: ``cos_mse, cosent, ibn, angle`` (all 0 / None = cosine-MSE). ``budget`` takes
    any :class:`tuner.train.TrainConfig` field: ``lr, epochs, max_steps, batch_size,
    max_seq_length, warmup_ratio, seed, ibn_positive_threshold, precision, …``.
    Returns a :class:`tuner.engine.FinetuneOutcome`: ``.scores["dev"|"test"][dataset]``,
    ``.dev_score``, ``.test_score``, ``.output`` (saved folder when ``output`` is given), ``.train``.
    Same as ``tuner finetune``.
    """
    unknown = sorted(set(budget) - _BUDGET_KEYS)
    if unknown:
        raise TunerError(f"unknown finetune option(s) {', '.join(unknown)}; use any of {', '.join(sorted(_BUDGET_KEYS))}")
    config = TrainConfig(weights=dict(weights or {}), taus={**DEFAULT_TAUS, **dict(taus or {})}, pooling=pooling, **budget)
    return run_finetune(model, train, eval, config, protocol=protocol, data_dir=data_dir,
                        max_train_examples=max_train_examples, output=output, device=device, progress=progress)


def _study_file(study: Any, n_trials: Optional[int], workdir: "str | os.PathLike | None") -> tuple[str, str]:
    """(path of a study file, study name) for a name, a path or a StudySpec (written to a file so
    that worker processes can read it; study files are parsed, never executed)."""
    import tempfile
    from pathlib import Path

    from tuner.exporter.leaderboard import toml_dumps
    from tuner.study import StudySpec, load_spec, parse_spec

    spec = study if isinstance(study, StudySpec) else load_spec(study)
    if n_trials is None and spec.path is not None:
        return str(spec.path), spec.name
    raw = dict(spec.raw)
    raw.setdefault("name", spec.name)
    if n_trials is not None:
        raw["n_trials"] = int(n_trials)
    if spec.path is not None and "data_dir" in raw and not Path(str(raw["data_dir"])).is_absolute():
        raw["data_dir"] = str((spec.path.parent / str(raw["data_dir"])).resolve())
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tuner-study-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.toml"
    path.write_text(toml_dumps(raw))
    parse_spec(raw, path)  # validate what the workers will read
    return str(path), spec.name


def optimize(study: Any, storage: Optional[str] = None, workers: Optional[int] = 1, n_trials: Optional[int] = None, *,
             study_name: Optional[str] = None, gpus: Optional[str] = None, artifacts: Optional[str] = None,
             heartbeat_interval: int = 10, grace_period: int = 30, quiet: bool = False) -> Any:
    """Run (or resume) a study and return it as an ``optuna.Study``.

    ``study``: a name from ``studies/`` (``"sts-quick"``), a path to a study file, or a
    :class:`tuner.study.StudySpec` (e.g. ``tuner.study.parse_spec({...})``). ``n_trials``
    overrides the file's (TPE/random studies). Same as ``tuner optimize``; the study lives in
    ``storage`` (default ``$TUNER_STORAGE`` or ``sqlite:///tuner.db``) and can be resumed.
    """
    import contextlib
    import io

    import optuna

    from tuner.cli import build_parser
    from tuner.storage import resolve_url

    path, name = _study_file(study, n_trials, None)
    url = resolve_url(storage)
    argv = ["optimize", "--study", path, "--storage", url, "--heartbeat-interval", str(heartbeat_interval),
            "--grace-period", str(grace_period)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    for flag, value in (("--study-name", study_name), ("--gpus", gpus), ("--artifacts", artifacts)):
        if value is not None:
            argv += [flag, str(value)]
    args = build_parser().parse_args(argv)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        code = args.func(args)
    loaded = optuna.load_study(study_name=study_name or name, storage=url)
    if code not in (0, None):
        raise TunerError(f"study '{study_name or name}' did not finish (workers exited with {code}); "
                         f"see python -m tuner status --study {study_name or name}")
    return loaded


def export(study: Any, out: "str | os.PathLike", storage: Optional[str] = None, split: str = "test") -> Any:
    """Write the results matrix, tables and plots of ``study`` (an ``optuna.Study`` or a study name
    in ``storage``) into ``out``. Returns a :class:`tuner.exporter.ExportResult` (``.matrix``,
    ``.files``, ``.plots``). Same as ``tuner export``."""
    from tuner.exporter import export_study

    return export_study(study, out, split=split, storage_url=storage)


def plot_matrix(matrix: Any, labels: Optional[Mapping[str, Any]] = None, out: "str | os.PathLike" = "plots") -> list:
    """Plot a results matrix (array of shape models x 9 loss rows x datasets, or a path to a .npy)
    with ``labels`` (``{"models": [...], "datasets": [...]}`` or the ``matrix.json`` dict) into
    ``out/plots``; returns the written PNG/SVG paths. Same as ``tuner plot``."""
    import json
    from pathlib import Path

    import numpy as np

    from tuner.exporter import plot_matrix as _plot

    if isinstance(matrix, (str, os.PathLike)):
        path = Path(matrix)
        if labels is None and path.with_suffix(".json").is_file():
            labels = json.loads(path.with_suffix(".json").read_text())
        matrix = np.load(path, allow_pickle=False)
    return _plot(matrix, labels, out)
