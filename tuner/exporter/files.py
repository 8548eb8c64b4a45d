"""Writing an export's files: atomic writes, a writable-folder check, strict JSON with passwords masked."""
from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional


from tuner.errors import TunerError
from tuner.jsonsafe import json_safe
from tuner.storage import mask_text
from tuner.storage import mask_url as storage_mask_url

__all__ = ["check_out_dir", "json_dumps", "library_versions", "mask_text", "mask_url", "scrub", "write_file"]


def mask_url(url: Optional[str]) -> Optional[str]:
    """:func:`tuner.storage.mask_url` that lets ``None`` through."""
    return None if url is None else storage_mask_url(str(url))


def scrub(obj: Any) -> Any:
    """Mask every URL-looking string in a JSON-able structure (no password is ever saved)."""
    if isinstance(obj, str):
        return mask_text(obj) if "://" in obj or "password=" in obj.lower() else obj
    if isinstance(obj, Mapping):
        return {str(k): scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj


def write_file(path: Path, data: bytes | str) -> Path:
    """Write ``data`` atomically (temp file + rename); any OS error becomes a one-line TunerError."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs follow the umask
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise TunerError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose a writable "
                         f"--out folder") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` and prove it is writable before anything is read or written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TunerError(f"output folder {out_dir} is a file; give --out a folder path")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tuner-write-check.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TunerError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}; "
                         f"choose a writable --out folder") from None
    return out_dir


def json_dumps(payload: Any) -> str:
    """Strict JSON (NaN/inf -> null, numpy scalars -> Python) with passwords masked."""
    return json.dumps(scrub(json_safe(payload)), indent=2, allow_nan=False) + "\n"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("tuner", "optuna", "numpy", "pandas", "matplotlib", "sqlalchemy", "torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
