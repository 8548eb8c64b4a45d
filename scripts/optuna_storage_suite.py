"""Run Optuna's own storage test-suite against tuner's storage (a reviewer's check, not part of CI).

    python scripts/optuna_storage_suite.py [OPTUNA_VERSION] [-- extra pytest args]

Downloads Optuna's sdist (``pip download``: PyPI only) into a temp folder and runs its
``tests/storages_tests`` with the "sqlite" and "cached_sqlite" storages built as
:func:`tuner.storage.open_storage` builds them (tuner's retrying ``TunerRDBStorage`` with WAL, busy
timeout and BEGIN IMMEDIATE) instead of a plain ``RDBStorage``. Needs ``fakeredis`` (Optuna's
testing module imports it): ``pip install fakeredis``. Prints pytest's summary; exit code is pytest's.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = r'''
import optuna
import optuna.testing.storages as ts
from tuner.storage._rdb import TunerRDBStorage, sqlite_engine_kwargs

_enter = ts.StorageSupplier.__enter__

def _enter_tuner(self):
    if self.storage_specifier not in ("sqlite", "cached_sqlite"):
        return _enter(self)
    self.tempfile = ts.NamedTemporaryFilePool().tempfile()
    # what tuner.storage.open_storage builds for an SQLite file (WAL, busy timeout, BEGIN IMMEDIATE,
    # retried calls), with the test's own arguments (heartbeat_interval, grace_period, callbacks)
    storage = TunerRDBStorage(f"sqlite:///{self.tempfile.name}", engine_kwargs=sqlite_engine_kwargs(self.tempfile.name),
                              **self.extra_args)
    self.storage = optuna.storages._CachedStorage(storage) if "cached" in self.storage_specifier else storage
    return self.storage

ts.StorageSupplier.__enter__ = _enter_tuner
'''


def main(argv: list[str]) -> int:
    version = argv[0] if argv and argv[0] != "--" else __import__("optuna").__version__
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"optuna=={version}", "-d", tmp], check=True)
        with tarfile.open(next(Path(tmp).glob("optuna-*.tar.gz"))) as tar:
            tar.extractall(tmp, filter="data")
        root = next(p for p in Path(tmp).iterdir() if p.is_dir())
        (root / "tuner_storage_plugin.py").write_text(PLUGIN)
        tests = root / "tests" / "storages_tests"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "tuner_storage_plugin", "-k", "sqlite",
               "-p", "no:cacheprovider", str(tests / "test_storages.py"), str(tests / "test_heartbeat.py"),
               str(tests / "test_cached_storage.py"), *extra]
        env = {**__import__("os").environ, "PYTHONPATH": f"{root}:{REPO}"}
        return subprocess.run(cmd, cwd=root, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
