"""A non-editable install carries the shipped studies: build the wheel, install it (--no-deps) into a
temporary target, and find ``--study sts`` from a folder that is not the repository."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "studies").glob("*.toml"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    wheels = tmp_path_factory.mktemp("wheel")
    target = tmp_path_factory.mktemp("target")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("tuner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(Path(n).stem for n in names if n.startswith("tuner/builtin_studies/")) == SHIPPED
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return target


def _run(args: list[str], target: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("TUNER_STUDIES_DIR", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_install_finds_the_shipped_studies_from_another_folder(installed, tmp_path):
    where = _run(["-c", "import tuner, tuner.study as s; print(tuner.__file__); print(s.find_study_file('sts'))"],
                 installed, tmp_path)
    assert where.returncode == 0, where.stderr
    module, study = where.stdout.split()
    assert Path(module).is_relative_to(installed)  # the installed copy, not the source tree
    assert Path(study).is_relative_to(installed) and Path(study).name == "sts.toml"
    listed = _run(["-m", "tuner", "studies", "--json"], installed, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["studies"]}
    assert set(SHIPPED) <= set(rows)
    assert rows["sts"]["error"] is None and rows["sts-grid"]["cells"] == 56
