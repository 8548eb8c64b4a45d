"""Finding study files: ``--study NAME`` or a path.

Study names are looked up in ``$TUNER_STUDIES_DIR``, then ``./studies``, then the studies shipped
inside the package (``tuner/builtin_studies``, the repository's ``studies/`` folder, installed as
package data), so a non-editable install finds ``--study sts`` from any folder.
"""
from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path

from tuner.errors import TunerError

ENV_STUDIES_DIR = "TUNER_STUDIES_DIR"


def builtin_studies_dir() -> Path:
    """The folder of the studies shipped with the package."""
    return Path(str(resources.files("tuner") / "builtin_studies"))


def studies_dirs() -> list[Path]:
    """Folders searched for ``--study NAME``: $TUNER_STUDIES_DIR, ./studies, the shipped studies."""
    dirs = []
    env = os.environ.get(ENV_STUDIES_DIR, "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [Path.cwd() / "studies", builtin_studies_dir()]
    out: list[Path] = []
    for d in dirs:
        d = d.resolve()
        if d not in out:
            out.append(d)
    return out


def list_study_files() -> list[Path]:
    """Every ``*.toml`` in the study folders (first folder wins for a repeated name)."""
    seen: dict[str, Path] = {}
    for folder in studies_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                seen.setdefault(path.stem, path)
    return sorted(seen.values(), key=lambda p: p.stem)


def find_study_file(name_or_path: "str | os.PathLike") -> Path:
    """A study name (``sts``) from the study folders, or a path to a TOML file."""
    text = str(name_or_path).strip()
    if not text:
        raise TunerError("--study is empty; pass a study name (python -m tuner studies lists them) or a .toml path")
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix == ".toml" or os.sep in text or text.startswith("."):
        raise TunerError(f"study file {text} does not exist; check the path or pass a study name "
                         "(python -m tuner studies lists them)")
    for folder in studies_dirs():
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return candidate.resolve()
    names = [p.stem for p in list_study_files()]
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TunerError(f"unknown study '{text}'; {hint}known studies: {', '.join(names) or 'none'} "
                     f"(in {', '.join(str(d) for d in studies_dirs())}); or pass a path to a .toml file")
