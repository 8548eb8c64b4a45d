"""Reading datasets: local files, in-memory DataFrames, built-ins and the Hugging Face hub.

``load_dataset(spec)`` resolves a string ``spec`` in this order:

1. an existing file -> a custom dataset; the task is inferred from the columns
   (sentence1/sentence2/score -> sts, sentence/label -> classification, premise/hypothesis/label
   -> nli) unless ``task`` is
   given. Formats by suffix: ``.tsv`` (tab-separated, quoting OFF, like shared/data),
   ``.csv`` (ordinary quoted CSV), ``.parquet``, ``.jsonl``/``.json`` (JSON lines; a plain
   JSON array of records is accepted too). A folder with the shared/data layout is a *data dir*,
   not a dataset, and is rejected with a hint to pass it as ``--data-dir``.
2. a built-in name (see :func:`~tuner.data.registry.canonical_name`) found in the data dir
   (``data_dir`` argument, else ``TUNER_DATA_DIR``, else auto-detected ``shared/data``).
3. the same built-in from the Hugging Face hub (:mod:`tuner.data.hub`; ``datasets`` is imported
   only then).
4. anything else -> "unknown dataset" error.

Custom data: the one table is stored under ``"all"`` (STS too); when it has a ``split`` column
with values train/dev/test (``validation``/``valid``/``val`` mean dev), the rows are stored under
those split names instead and both protocols use them (train and test rows are then required).
"""
from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path
from typing import Mapping

import pandas as pd

from tuner.errors import TunerError

from . import registry
from .beir import is_beir_folder, load_beir
from .shapes import apply_columns
from .hub import load_hub_builtin, load_hub_nli
from .registry import (
    BUILTIN_DATASETS,
    DEFAULT_SCORE_RANGE,
    SCORE_RANGES,
    Dataset,
    builtin_files,
    canonical_name,
    is_data_dir,
    resolve_data_dir,
    task_of,
)
from .validate import (
    SPLIT_COLUMN,
    SPLIT_VALUES,
    check_task,
    infer_task,
    normalize_columns,
    validate_score_range,
    validate_table,
)

SUPPORTED_SUFFIXES = (".tsv", ".csv", ".parquet", ".jsonl", ".json")
_FORMATS_HINT = "a .csv/.tsv/.parquet/.jsonl file"


# --------------------------------------------------------------------------------------
# raw readers


def _check_readable(path: Path, shown: str) -> None:
    if not path.exists():
        raise TunerError(f"{shown}: file not found (working directory: {Path.cwd()}); check the path")
    if path.is_dir():
        if is_data_dir(path):
            raise TunerError(
                f"{shown}: is a data directory (layout of shared/data), not a dataset; pass it as "
                f"--data-dir {shown} and name a built-in dataset (e.g. stsb)"
            )
        raise TunerError(f"{shown}: is a directory, not a file; give {_FORMATS_HINT}")
    if not path.is_file():
        raise TunerError(f"{shown}: is not a regular file; give {_FORMATS_HINT}")
    if not os.access(path, os.R_OK):
        raise TunerError(f"{shown}: permission denied; make the file readable (chmod +r) or copy it somewhere readable")


def _raise_bad_json_line(path: Path, shown: str) -> None:
    """Name the first line of a JSON-lines file that is not one JSON object."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise TunerError(
                    f"{shown}: line {lineno} is not valid JSON ({exc.msg}); a .jsonl file needs one JSON object per line"
                ) from None
            if not isinstance(obj, dict):
                raise TunerError(
                    f"{shown}: line {lineno} is a JSON {type(obj).__name__}, not an object; a .jsonl file needs "
                    f"one object per line, e.g. {{\"sentence\": \"...\", \"label\": 1}}"
                )


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a local table without interpreting values (text files: every cell a str).

    ``.tsv`` is read with quoting off (``csv.QUOTE_NONE``): fields starting with ``"`` are
    kept verbatim and no row is lost; ``.csv`` uses normal CSV quoting. Empty cells stay ``""``
    (``keep_default_na=False``) so that validation can name them.
    """
    p = Path(path)
    shown = str(path)
    _check_readable(p, shown)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise TunerError(
            f"{shown}: unsupported file type '{p.suffix or '(none)'}'; use .csv, .tsv, .parquet or .jsonl"
        )
    try:
        if suffix in (".tsv", ".csv"):
            if p.stat().st_size == 0:
                raise TunerError(f"{shown}: the file is empty; it needs a header row and data rows")
            kwargs = dict(dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
            if suffix == ".tsv":
                df = pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE, **kwargs)
            else:
                df = pd.read_csv(p, **kwargs)
        elif suffix == ".parquet":
            df = pd.read_parquet(p)
        else:
            if p.stat().st_size == 0:
                raise TunerError(f"{shown}: the file is empty; it needs one JSON object per line")
            with open(p, "rb") as fh:
                head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
            if suffix == ".json" and head.startswith(b"["):
                df = pd.read_json(p, orient="records", dtype=False, encoding="utf-8")
            else:
                try:
                    df = pd.read_json(p, lines=True, dtype=False, encoding="utf-8")
                except ValueError:
                    _raise_bad_json_line(p, shown)
                    raise
    except TunerError:
        raise
    except PermissionError:
        raise TunerError(f"{shown}: permission denied; make the file readable (chmod +r)") from None
    except UnicodeDecodeError as exc:
        raise TunerError(f"{shown}: not valid UTF-8 (byte offset {exc.start}); re-save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise TunerError(f"{shown}: the file is empty; it needs a header row and data rows") from None
    except pd.errors.ParserError as exc:
        msg = " ".join(str(exc).split())
        extra = (
            " (a .tsv must have exactly one tab between fields and no tabs inside fields; quoting is off)"
            if suffix == ".tsv" else " (check quoting and the number of commas on that line)"
        )
        raise TunerError(f"{shown}: cannot parse: {msg}{extra}") from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise TunerError(f"{shown}: permission denied; make the file readable (chmod +r)") from None
        raise TunerError(f"{shown}: cannot read: {exc.strerror or exc}; check the file") from None
    except Exception as exc:  # malformed parquet/json: pyarrow / ValueError
        msg = " ".join(str(exc).split())[:200]
        raise TunerError(f"{shown}: cannot read as {suffix[1:]}: {type(exc).__name__}: {msg}; check the file format") from None
    return normalize_columns(df)


# --------------------------------------------------------------------------------------
# custom data


def _custom_dataset(df: pd.DataFrame, where: str, *, name: str, source: str, task: str | None,
                    score_range: tuple[float, float] | None, columns: Mapping[str, str] | None = None) -> Dataset:
    df = normalize_columns(apply_columns(df, columns, where))
    task = check_task(task) or infer_task(df, where)
    if task == "sts":
        rng = validate_score_range(score_range) if score_range is not None else DEFAULT_SCORE_RANGE
    else:
        rng = None
    splits: dict[str, pd.DataFrame]
    if SPLIT_COLUMN in df.columns:
        labels = df[SPLIT_COLUMN].reset_index(drop=True)
        norm = labels.map(lambda v: SPLIT_VALUES.get(str(v).strip().lower()) if v is not None else None)
        bad = norm.isna().to_numpy()
        if bad.any():
            i = int(bad.nonzero()[0][0])
            raise TunerError(
                f"{where}: row {i + 1}: column 'split' is {str(labels.iloc[i])!r}; use train, dev or test "
                f"(or drop the split column to let the protocol split the data)"
            )
        present = set(norm)
        missing = [s for s in ("train", "test") if s not in present]
        if missing:
            raise TunerError(
                f"{where}: column 'split' has no {' or '.join(repr(m) for m in missing)} rows; a split column "
                f"needs train and test rows (dev is optional), or drop it to let the protocol split the data"
            )
        body = df.drop(columns=[SPLIT_COLUMN]).reset_index(drop=True)
        # Validate once on the whole table so that row numbers refer to the file.
        checked = validate_table(body, task, where, score_range=rng, allow_blank=False)
        splits = {s: checked[norm == s].reset_index(drop=True) for s in ("train", "dev", "test") if s in present}
    else:
        splits = {"all": validate_table(df, task, where, score_range=rng, allow_blank=False)}
    return Dataset(name=name, task=task, splits=splits, source=source, score_range=rng, builtin=False)


def _load_file(path: Path, shown: str, *, task, name, score_range, columns=None) -> Dataset:
    df = read_saved_dataset(path, shown) if is_saved_dataset(path) else read_table(path)
    return _custom_dataset(df, shown, name=name or path.stem, source=str(path), task=task, score_range=score_range,
                           columns=columns)


def is_saved_dataset(path: Path) -> bool:
    """A folder ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` wrote."""
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file())


def read_saved_dataset(path: Path, shown: str) -> pd.DataFrame:
    """A ``save_to_disk`` folder as one table; a ``DatasetDict``'s splits become the ``split`` column."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets' own errors: one line
        raise TunerError(f"{shown}: cannot read as a saved datasets folder: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(loaded, datasets.DatasetDict):
        frames = [d.to_pandas().assign(**{SPLIT_COLUMN: split}) for split, d in loaded.items()]
        return pd.concat(frames, ignore_index=True)
    return loaded.to_pandas()


# --------------------------------------------------------------------------------------
# built-ins


def _check_builtin_task(name: str, task: str | None) -> str:
    actual = task_of(name)
    wanted = check_task(task)
    if wanted is not None and wanted != actual:
        kind = {"sts": "an STS", "nli": "an NLI"}.get(actual, "a classification")
        raise TunerError(f"dataset '{name}' is {kind} dataset, not {wanted}; drop --task or use --task {actual}")
    return actual


def _load_local_builtin(name: str, files: dict[str, Path], data_dir: Path, label: str | None) -> Dataset:
    expected = registry.LOCAL_SPLITS[name]
    missing = [s for s in expected if s not in files]
    if missing:
        folder = registry.builtin_folder(name, data_dir)
        raise TunerError(
            f"{folder}: has {', '.join(f'{s}.tsv' for s in files)} but not "
            f"{', '.join(f'{s}.tsv' for s in missing)}; restore the missing files (check with sha256sum -c MANIFEST.sha256)"
        )
    task = task_of(name)
    rng = SCORE_RANGES.get(name)
    splits = {}
    for split, path in files.items():
        df = read_table(path)
        splits[split] = validate_table(df, task, str(path), score_range=rng, allow_blank=True)
    return Dataset(name=label or name, task=task, splits=splits, source=str(files[expected[0]].parent),
                   score_range=rng, builtin=True)


def load_builtin(name: str, *, data_dir: str | os.PathLike | None = None, label: str | None = None) -> Dataset:
    """Load a built-in (canonical ``name``) from the data dir, else from the hub."""
    root = resolve_data_dir(data_dir)
    files = builtin_files(name, root)
    if files:
        return _load_local_builtin(name, files, root, label)
    if name in registry.NLI_DATASETS:
        return load_hub_nli(name, label)
    return load_hub_builtin(name, label)


# --------------------------------------------------------------------------------------
# entry point


def load_dataset(
    spec: "str | os.PathLike | pd.DataFrame",
    *,
    task: str | None = None,
    data_dir: "str | os.PathLike | None" = None,
    name: str | None = None,
    score_range: tuple[float, float] | None = None,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Load a dataset from a file, a DataFrame, a built-in name or the hub (see module doc).

    ``name`` overrides the dataset's name (file stem / canonical name / ``"dataframe"``);
    ``score_range`` sets the scale of a custom STS set (default 0..5; built-ins use their
    own: 0..5, SICK-R 1..5); ``data_dir`` points at a shared/data-style folder and disables
    auto-detection. ``columns`` renames a custom table's columns first (tuner's name -> yours,
    :func:`tuner.data.shapes.apply_columns`). A folder written by ``datasets``' ``save_to_disk`` is
    read like a file (a ``DatasetDict``'s train/validation/test become its splits).
    """
    if isinstance(spec, pd.DataFrame):
        label = name or "dataframe"
        return _custom_dataset(spec, f"DataFrame '{label}'", name=label, source="<DataFrame>",
                               task=task, score_range=score_range, columns=columns)
    if isinstance(spec, os.PathLike):
        path = Path(spec)
        if path.is_dir() and is_beir_folder(path):
            return load_beir(path, name=name)
        return _load_file(path, str(spec), task=task, name=name, score_range=score_range, columns=columns)
    if not isinstance(spec, str):
        raise TunerError(
            f"dataset must be a name, a path or a DataFrame, not {type(spec).__name__}; "
            f"e.g. 'stsb' or data/my.csv"
        )
    text = spec.strip()
    if not text:
        raise TunerError(f"empty dataset name; built-in names: {', '.join(BUILTIN_DATASETS)}, or give a path to {_FORMATS_HINT}")
    path = Path(text).expanduser()
    if path.is_dir() and is_beir_folder(path):
        if task is not None and str(task).strip().lower() != "retrieval":
            raise TunerError(f"{text} is a retrieval folder (corpus.jsonl, queries.jsonl, qrels/), not {task} data; "
                             "drop --task or pass a file of that task")
        return load_beir(path, name=name)
    if path.is_file() or is_saved_dataset(path):
        return _load_file(path, text, task=task, name=name, score_range=score_range, columns=columns)
    canon = canonical_name(text)
    if canon is not None and not (path.exists() and os.sep in text):
        _check_builtin_task(canon, task)
        return load_builtin(canon, data_dir=data_dir, label=name)
    if path.exists() or os.sep in text or (os.altsep and os.altsep in text) or path.suffix.lower() in SUPPORTED_SUFFIXES:
        # Not a file we can read: let read_table say why (missing / directory / data dir / ...).
        return _load_file(path, text, task=task, name=name, score_range=score_range)
    hint = registry.suggest(text)
    did_you_mean = f" (did you mean '{hint}'?)" if hint else ""
    raise TunerError(
        f"unknown dataset '{text}'{did_you_mean}; built-in names: {', '.join(BUILTIN_DATASETS)} "
        f"(NLI: {', '.join(registry.NLI_DATASETS)}), or give a path to {_FORMATS_HINT}"
    )
