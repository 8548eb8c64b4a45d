"""A study file for the user's own data, without writing TOML (``tuner init``, ``optimize --train``).

The study is the shipped one for the data's task (``sts`` for scored pairs, ``senteval`` for labelled
sentences, ``sts`` with the NLI-transfer protocol for NLI rows), with the user's files in ``[data]``,
the chosen model and trial count, and a header saying what was read. The shipped file stays the one
owner of the search space and the sampler settings: this module only swaps the lines that name the
data, so every comment of the template is kept for the user to edit.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Optional

from tuner.data import load_dataset
from tuner.errors import TunerError
from tuner.study.files import builtin_studies_dir
from tuner.study.parse import parse_spec

#: The shipped study each task starts from.
TEMPLATE_OF_TASK = {"sts": "sts", "classification": "senteval", "nli": "sts"}
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _toml(value: Any) -> str:
    """A TOML value for the strings, numbers and lists written here (JSON's quoting is TOML's basic string)."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _describe(spec: str, ds: Any) -> str:
    rows = ", ".join(f"{k} {len(v):,}" for k, v in ds.splits.items())
    scale = f", scores {ds.score_range[0]:g}..{ds.score_range[1]:g}" if ds.task == "sts" and ds.score_range else ""
    return f"{spec}: task {ds.task}, rows {rows}{scale}"


def study_name_for(train: str, task: str) -> str:
    """``<train file stem>-<task>`` with characters a study name may have."""
    stem = Path(str(train)).stem if os.sep in str(train) or Path(str(train)).suffix else str(train)
    return _NAME_SAFE.sub("-", f"{stem}-{task}").strip("-.") or f"my-{task}"


def _set_key(text: str, key: str, value: Any) -> str:
    """Replace (or add) a top-level ``key = ...`` line, before the first table."""
    head, sep, tables = text.partition("\n[")
    line = f"{key} = {_toml(value)}"
    pattern = re.compile(rf"^{re.escape(key)}\s*=.*$", re.MULTILINE)
    head = pattern.sub(line.replace("\\", "\\\\"), head, count=1) if pattern.search(head) else f"{head.rstrip()}\n{line}\n"
    return head + sep + tables


def _set_data(text: str, train: list[str], eval_: Optional[list[str]]) -> str:
    """Replace the ``[data]`` table's body (no ``eval``: the task's default)."""
    body = f"train = {_toml(train)}\n" + (f"eval = {_toml(eval_)}\n" if eval_ is not None else "")
    match = re.search(r"^\[data\]\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        raise TunerError("the shipped study template has no [data] table; reinstall tuner")
    return text[:match.start(1)] + body + "\n" + text[match.end(1):].lstrip("\n")


def study_text(train: "str | os.PathLike", eval: "str | os.PathLike | None" = None, *, model: Optional[str] = None,
               n_trials: Optional[int] = None, data_dir: "str | os.PathLike | None" = None) -> tuple[str, str]:
    """``(name, TOML text)`` of a study on ``train`` scored on ``eval`` (default: ``train``'s own splits).

    Both are read and checked first (a bad file is one line, nothing written); paths are written
    absolute so the file works from any folder."""
    train_ds = load_dataset(str(train), data_dir=data_dir)
    eval_ds = load_dataset(str(eval), data_dir=data_dir) if eval is not None else None
    task = train_ds.task
    if task not in TEMPLATE_OF_TASK:
        raise TunerError(f"{train} holds {task} data, which a study cannot train on; train on scored pairs, "
                         "labelled sentences or NLI rows")
    wanted = "sts" if task == "nli" else task
    if eval_ds is not None and eval_ds.task != wanted:
        raise TunerError(f"{eval} holds {eval_ds.task} data but {train} trains a {task} model, scored on {wanted} "
                         f"data; pass an --eval file of task {wanted}")

    def where(spec: "str | os.PathLike") -> str:
        path = Path(str(spec)).expanduser()
        return str(path.resolve()) if path.exists() else str(spec)

    name = study_name_for(str(train), task)
    template = builtin_studies_dir() / f"{TEMPLATE_OF_TASK[task]}.toml"
    text = template.read_text(encoding="utf-8")
    text = text[re.search(r"^[^#\n]", text, flags=re.MULTILINE).start():]  # its header is about its own data
    text = _set_key(text, "description", f"TPE over losses, weights, taus and pooling on {Path(str(train)).name}"
                                         + (f", scored on {Path(str(eval)).name}" if eval is not None else ""))
    text = _set_key(text, "task", task)
    if task == "nli":
        text = _set_key(text, "protocol", "nli-transfer")
    if model is not None:
        text = _set_key(text, "models", [model])
    if n_trials is not None:
        text = _set_key(text, "n_trials", int(n_trials))
    if data_dir is not None:
        text = _set_key(text, "data_dir", str(Path(data_dir).expanduser().resolve()))
    if eval is not None:
        evals: Optional[list[str]] = [where(eval)]
    else:  # NLI: the seven STS sets (the protocol's default); otherwise the train file's own dev/test
        evals = None if task == "nli" else [where(train)]
    text = _set_data(text, [where(train)], evals)
    header = [f"# Study '{name}', written by `python -m tuner init` from the shipped study '{template.stem}'.",
              f"# train  {_describe(where(train), train_ds)}"]
    if eval_ds is not None:
        header.append(f"# eval   {_describe(where(eval), eval_ds)}")
    header += ["# Splits (protocol 'standard'): a file's `split` column when it has one (train/dev/test), else",
               "# a seeded 30% test and 10% of the rest as dev; trials train on the train part, select on the eval",
               "# set's dev part and only record its test part. Search space and sampler: the shipped study's.",
               "# Edit anything below; run it with: python -m tuner optimize --study THIS_FILE"]
    text = "\n".join(header) + "\n" + text
    parse_spec(tomllib.loads(text), Path(f"{name}.toml"))  # what optimize would refuse, refused now
    return name, text


def write_study_for_data(train: str, eval: Optional[str], folder: Path, *, model: Optional[str] = None,
                         n_trials: Optional[int] = None, data_dir: "str | os.PathLike | None" = None) -> Path:
    """Write the study for ``train``/``eval`` to ``folder/<name>.toml`` and return its path. The same
    call again finds the same file (a resume); a file of that name with other contents (edited, or
    written for other data) is kept and refused in one line."""
    name, text = study_text(train, eval, model=model, n_trials=n_trials, data_dir=data_dir)
    path = folder / f"{name}.toml"
    if path.is_file():
        if path.read_text(encoding="utf-8") == text:
            return path
        raise TunerError(f"{path} exists with other settings (edited, or written for other data); run it with "
                         f"optimize --study {path}, or move it away to start a new study from --train")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TunerError(f"cannot write the study file {path}: {exc.strerror or exc}; run from a writable "
                         "folder or use tuner init --out FILE and optimize --study FILE") from None
    print(f"study '{name}' written to {path} (edit it and run optimize --study {path} to change it)", file=sys.stderr)
    return path
