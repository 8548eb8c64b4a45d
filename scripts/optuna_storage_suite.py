"""Run Optuna's own storage test suite against tuner's storages, and against plain ``RDBStorage``.

    python scripts/optuna_storage_suite.py [--backend sqlite|postgresql|mysql ...] [--flavour tuner|plain ...]
                                           [--optuna VERSION] [-- extra pytest args]

Fetches the installed Optuna version's sdist once (``pip download``, cached under
``~/.cache/tuner/optuna-tests/VERSION``) and runs its ``tests/storages_tests`` with this file as a
pytest plugin (``-p optuna_storage_suite``), once per backend and flavour:

- backend ``sqlite``: an SQLite file; ``postgresql`` / ``mysql``: a fresh database created for the
  run on the server of ``$TUNER_TEST_POSTGRES`` / ``$TUNER_TEST_MYSQL`` (dropped afterwards);
- flavour ``tuner``: every storage the tests ask for is built as :func:`tuner.storage.open_storage`
  builds it (:class:`~tuner.storage._rdb.TunerRDBStorage` with its engine settings, retries, WAL and
  ``BEGIN IMMEDIATE`` on SQLite) and the gRPC storage is tuner's proxy
  (:func:`tuner.storage._proxy.start_proxy`) with tuner's client; flavour ``plain``: Optuna's
  ``RDBStorage`` and ``GrpcStorageProxy`` on the same database, to tell tuner's failures from the
  backend's.

Optuna's storage modes are narrowed to the RDB ones: ``sqlite`` and ``cached_sqlite`` (the names stay
Optuna's; on a server backend they are that server's database, plain and behind ``_CachedStorage``)
and ``grpc_rdb`` (a gRPC proxy over that database). ``rdb_tests/`` and ``test_cached_storage.py``
are SQLite-only (in-memory databases, upgrade assets) and run on the ``sqlite`` backend, built by
tuner in the tuner flavour; ``test_with_server.py`` (several processes on one database) runs on
every backend. A list of node-id patterns, each with a one-line reason, can mark tests
``xfail(strict=True)`` in the tuner flavour (expected to fail for tuner's reasons) or deselect them
in both (``$TUNER_SUITE_LIST``: a JSON list of ``{"glob", "reason", "action": "xfail"|"deselect"}``;
tests/storage/test_optuna_suite.py passes its lists).

Prints, per backend, passed/failed/skipped/xfailed for each flavour and the failures only tuner has;
exit 1 when there are any.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TUNER_CACHE_DIR") or Path.home() / ".cache" / "tuner") / "optuna-tests"
BACKENDS = ("sqlite", "postgresql", "mysql")
FLAVOURS = ("tuner", "plain")
SERVER_URLS = {"postgresql": ("TUNER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
               "mysql": ("TUNER_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")}
# Optuna's storage modes that are an RDBStorage or a proxy in front of one (the others: in-memory, journal)
RDB_MODES = ["sqlite", "cached_sqlite", "grpc_rdb"]
TEST_FILES = {"sqlite": ["test_storages.py", "test_heartbeat.py", "test_callbacks.py", "test_grpc.py",
                         "test_with_server.py", "test_cached_storage.py", "rdb_tests/test_storage.py"],
              "postgresql": ["test_storages.py", "test_heartbeat.py", "test_callbacks.py", "test_grpc.py",
                             "test_with_server.py"]}
TEST_FILES["mysql"] = TEST_FILES["postgresql"]
FAILED = ("failed", "error", "xpassed")


# --------------------------------------------------------------------------------------------
# Running the suite


def server_url(backend: str) -> str:
    variable, default = SERVER_URLS[backend]
    return os.environ.get(variable) or default


def optuna_tests(version: Optional[str] = None) -> Path:
    """The root of Optuna ``version``'s sdist (default: the installed version), downloaded once."""
    if version is None:
        import optuna

        version = optuna.__version__
    root = CACHE / version
    if (root / "tests" / "storages_tests").is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                                 f"optuna=={version}", "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob("optuna-*.tar.gz"))
        if result.returncode != 0 or not archives:
            last = (result.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            raise RuntimeError(f"cannot download Optuna {version}'s sdist ({last}); check the network "
                               "or the package index")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(tmp, filter="data")
        extracted = next(p for p in Path(tmp).iterdir() if p.is_dir())
        if root.exists():  # a half-written cache from an interrupted run
            shutil.rmtree(root)
        extracted.rename(root)
    return root


@dataclass
class SuiteResult:
    backend: str
    flavour: str
    outcomes: dict[str, str] = field(default_factory=dict)  # nodeid -> passed/failed/error/skipped/xfailed/xpassed
    seconds: float = 0.0
    returncode: int = 0
    output: str = ""

    def count(self, *kinds: str) -> int:
        return sum(1 for o in self.outcomes.values() if o in kinds)

    @property
    def failed(self) -> set[str]:
        return {n for n, o in self.outcomes.items() if o in FAILED}

    def summary(self) -> str:
        return (f"{self.count('passed')} passed, {self.count(*FAILED)} failed, {self.count('skipped')} skipped, "
                f"{self.count('xfailed')} xfailed in {self.seconds:.0f}s")


def run_suite(backend: str, flavour: str, *, version: Optional[str] = None, listed: Optional[list[dict]] = None,
              select: Optional[list[str]] = None, extra: tuple[str, ...] = (), timeout: float = 1800.0) -> SuiteResult:
    """Run Optuna's storage tests for one backend and flavour (``select``: only these node ids);
    return every test's outcome. ``listed``: xfail/deselect entries (see the module's docstring)."""
    return collect(start_suite(backend, flavour, version=version, listed=listed, select=select, extra=extra),
                   timeout)


@dataclass
class RunningSuite:
    backend: str
    flavour: str
    proc: subprocess.Popen
    folder: tempfile.TemporaryDirectory
    started: float


def start_suite(backend: str, flavour: str, *, version: Optional[str] = None, listed: Optional[list[dict]] = None,
                select: Optional[list[str]] = None, extra: tuple[str, ...] = ()) -> RunningSuite:
    """Start :func:`run_suite`'s pytest in the background (several backends at once: the suite
    mostly sleeps in heartbeat tests); :func:`collect` waits for it."""
    if backend not in BACKENDS or flavour not in FLAVOURS:
        raise ValueError(f"backend must be one of {BACKENDS} and flavour one of {FLAVOURS}")
    root = optuna_tests(version)
    tests = root / "tests" / "storages_tests"
    folder = tempfile.TemporaryDirectory(prefix="optuna-suite-")
    tmp = Path(folder.name)
    (tmp / "listed.json").write_text(json.dumps(listed or []))
    env = {**os.environ, "TUNER_SUITE_BACKEND": backend, "TUNER_SUITE_FLAVOUR": flavour,
           "TUNER_SUITE_REPORT": str(tmp / "outcomes.json"), "TUNER_SUITE_LIST": str(tmp / "listed.json"),
           "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), str(root), str(REPO)])}
    if backend in SERVER_URLS:
        env["TUNER_SUITE_SERVER"] = server_url(backend)
    targets = list(select) if select else [str(tests / f) for f in TEST_FILES[backend]]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "optuna_storage_suite", "-p", "no:cacheprovider",
           "--timeout=600", "-o", "addopts=", *targets, *extra]
    with open(tmp / "output.txt", "w") as output:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    return RunningSuite(backend, flavour, proc, folder, time.monotonic())


def collect(running: RunningSuite, timeout: float = 1800.0) -> SuiteResult:
    """Wait for a suite started by :func:`start_suite`; its outcomes."""
    try:
        try:
            running.proc.wait(timeout=max(1.0, timeout - (time.monotonic() - running.started)))
        except subprocess.TimeoutExpired:
            running.proc.kill()
            running.proc.wait()
        tmp = Path(running.folder.name)
        result = SuiteResult(running.backend, running.flavour, seconds=time.monotonic() - running.started,
                             returncode=running.proc.returncode, output=(tmp / "output.txt").read_text())
        if (tmp / "outcomes.json").is_file():
            result.outcomes = json.loads((tmp / "outcomes.json").read_text())
        return result
    finally:
        running.folder.cleanup()


def tuner_only(tuner: SuiteResult, plain: SuiteResult) -> list[str]:
    """Tests that fail with tuner's storage and pass (or are not run) with plain ``RDBStorage``."""
    return sorted(tuner.failed - plain.failed)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="default: all three")
    parser.add_argument("--flavour", action="append", choices=FLAVOURS, help="default: both")
    parser.add_argument("--optuna", default=None, help="Optuna version of the tests (default: the installed one)")
    args = parser.parse_args(argv)
    flavours = args.flavour or list(FLAVOURS)
    status = 0
    for backend in args.backend or BACKENDS:
        running = {f: start_suite(backend, f, version=args.optuna, extra=tuple(extra)) for f in flavours}
        results = {f: collect(r) for f, r in running.items()}  # both flavours at once
        for flavour, result in results.items():
            print(f"{backend:10s} {flavour:6s} {result.summary()}")
            if not result.outcomes:
                print(result.output[-3000:])
                status = 1
            for nodeid in sorted(result.failed):
                print(f"    {result.outcomes[nodeid]:7s} {nodeid}")
        if set(flavours) == set(FLAVOURS):
            only = tuner_only(results["tuner"], results["plain"])
            print(f"{backend:10s} tuner-only failures: {len(only)} (those expected, each with its reason: TUNER_ONLY in "
                  "tests/storage/test_optuna_suite.py)")
            for nodeid in only:
                print(f"    {nodeid}")
            status = status or int(bool(only))
    return status


# --------------------------------------------------------------------------------------------
# The pytest plugin (active when $TUNER_SUITE_BACKEND is set)

_outcomes: dict[str, str] = {}
_admin: dict[str, Any] = {}


def _flavour() -> str:
    return os.environ.get("TUNER_SUITE_FLAVOUR", "tuner")


def _backend() -> str:
    return os.environ.get("TUNER_SUITE_BACKEND", "")


def _server_database_url() -> str:
    """The URL of the database created for this run (server backends)."""
    return _admin["url"]


@contextlib.contextmanager
def _admin_connection(url: str) -> Iterator[Any]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from tuner.storage import resolve_url

    engine = sqlalchemy.create_engine(resolve_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _create_run_database() -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from tuner.storage import resolve_url

    server = resolve_url(os.environ["TUNER_SUITE_SERVER"])
    name = f"optuna_suite_{_flavour()}_{uuid.uuid4().hex[:8]}"
    with _admin_connection(server) as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    _admin.update(server=server, name=name, url=url)


def _drop_run_database() -> None:
    from sqlalchemy import text

    if "name" not in _admin:
        return
    force = " WITH (FORCE)" if _admin["server"].startswith("postgres") else ""
    with _admin_connection(_admin["server"]) as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {_admin['name']}{force}"))


def _empty_run_database() -> None:
    """Delete every row of Optuna's tables (kept between tests: creating them is the slow part)."""
    import optuna
    from optuna.storages._rdb import models
    from sqlalchemy import inspect, text

    if not _admin.get("tables_created"):
        optuna.storages.RDBStorage(_server_database_url()).engine.dispose()  # creates the tables
        _admin["tables_created"] = True
    with _admin_connection(_server_database_url()) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET lock_timeout = '60s'"))
        existing = set(inspect(conn).get_table_names())
        for table in reversed(models.BaseModel.metadata.sorted_tables):
            if table.name in existing and table.name not in ("version_info", "alembic_version"):
                conn.execute(table.delete())


def _open_tuner(url: str, extra: dict[str, Any]) -> Any:
    """``open_storage(url)`` with the test's heartbeat arguments; callbacks set as a tuner user would."""
    from tuner.storage import open_storage

    handle = open_storage(url, heartbeat_interval=extra.get("heartbeat_interval"),
                          grace_period=extra.get("grace_period"))
    callback = extra.get("heartbeat_stale_trial_callback") or extra.get("failed_trial_callback")
    if callback is not None:
        handle.storage.heartbeat_stale_trial_callback = callback
        handle.storage.failed_trial_callback = callback
    return handle.storage


def _install_supplier() -> None:
    import optuna
    import optuna.testing.storages as ts

    ts.STORAGE_MODES[:] = RDB_MODES
    enter, leave = ts.StorageSupplier.__enter__, ts.StorageSupplier.__exit__
    backend, flavour = _backend(), _flavour()

    def database_url(self: Any) -> str:
        if backend == "sqlite":
            self.tempfile = ts.NamedTemporaryFilePool().tempfile()
            return f"sqlite:///{self.tempfile.name}"
        _empty_run_database()
        return _server_database_url()

    def enter_rdb(self: Any) -> Any:
        mode = self.storage_specifier
        if mode not in RDB_MODES or (backend == "sqlite" and flavour == "plain"):
            return enter(self)  # Optuna's own (and grpc_proxy: Optuna's proxy over the storage given)
        url = database_url(self)
        if mode == "grpc_rdb":
            if flavour == "tuner":
                from tuner.storage import open_storage
                from tuner.storage._proxy import start_proxy

                self.tuner_proxy = start_proxy(url, port=0, threads=8)
                self.storage = open_storage(f"grpc://127.0.0.1:{self.tuner_proxy.port}", heartbeat_interval=None,
                                            grace_period=None).storage
                return self.storage
            self.backend_storage = optuna.storages.RDBStorage(url)
            self.storage = self._create_proxy(self.backend_storage)
            return self.storage
        if flavour == "tuner":
            storage = _open_tuner(url, self.extra_args)
        else:
            storage = optuna.storages.RDBStorage(url, **self.extra_args)
        self.storage = optuna.storages._CachedStorage(storage) if mode == "cached_sqlite" else storage
        return self.storage

    def exit_rdb(self: Any, *exc: Any) -> None:
        proxy = getattr(self, "tuner_proxy", None)
        if proxy is None:
            return leave(self, *exc)
        with contextlib.suppress(Exception):
            self.storage.close()
        proxy.stop(grace=1.0)  # closes the proxy's storage
        self.tuner_proxy = self.storage = None
        if self.tempfile:
            self.tempfile.close()

    ts.StorageSupplier.__enter__ = enter_rdb
    ts.StorageSupplier.__exit__ = exit_rdb


@contextlib.contextmanager
def _tuner_rdb(url: str = "sqlite:///:memory:", engine_kwargs: Optional[dict[str, Any]] = None,
               skip_compatibility_check: bool = False, skip_table_creation: bool = False) -> Iterator[Any]:
    """rdb_tests' ``create_test_storage`` with tuner's storage: open_storage's SQLite engine settings
    plus the test's own engine arguments."""
    from tuner.storage import sqlite_path
    from tuner.storage._rdb import open_tuner_rdb, sqlite_engine_kwargs

    if url.startswith("sqlite"):
        path = sqlite_path(url)
        kwargs = {**sqlite_engine_kwargs(str(path) if path is not None else ":memory:"), **(engine_kwargs or {})}
    else:
        kwargs = dict(engine_kwargs or {})
    storage = open_tuner_rdb(url, kwargs, None, None, skip_compatibility_check=skip_compatibility_check,
                             skip_table_creation=skip_table_creation)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def _tuner_server_storage() -> Iterator[Any]:
    """test_with_server's ``get_storage`` with tuner's storage on ``$TEST_DB_URL``."""
    from tuner.storage import open_storage

    handle = open_storage(os.environ["TEST_DB_URL"], heartbeat_interval=None, grace_period=None)
    try:
        yield handle.storage
    finally:
        handle.close()


def pytest_configure(config: Any) -> None:
    if not _backend():
        return
    _install_supplier()
    if _backend() == "sqlite":
        os.environ["TEST_DB_URL"] = f"sqlite:///{Path(tempfile.gettempdir()) / 'with_server.db'}"
    else:
        _create_run_database()
        os.environ["TEST_DB_URL"] = _server_database_url()


def pytest_unconfigure(config: Any) -> None:
    if not _backend():
        return
    _drop_run_database()
    report = os.environ.get("TUNER_SUITE_REPORT")
    if report:
        Path(report).write_text(json.dumps(_outcomes, indent=1, sort_keys=True))


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if not _backend():
        return
    import pytest

    if _flavour() == "tuner":
        for module in {item.module for item in items if getattr(item, "module", None) is not None}:
            name = module.__name__
            if name.endswith("rdb_tests.test_storage"):
                module.create_test_storage = _tuner_rdb
            elif name.endswith("test_cached_storage"):
                module.create_rdb_storage = _tuner_rdb
            elif name.endswith("test_with_server"):
                module.get_storage = contextlib.contextmanager(_tuner_server_storage)
    listed = json.loads(Path(os.environ["TUNER_SUITE_LIST"]).read_text() or "[]") \
        if os.environ.get("TUNER_SUITE_LIST") else []
    kept, dropped = [], []
    for item in items:
        matches = [e for e in listed if fnmatch.fnmatchcase(item.nodeid, e["glob"])]
        if any(e.get("action") == "deselect" for e in matches):
            dropped.append(item)
            continue
        kept.append(item)
        for entry in matches:
            if entry.get("action", "xfail") == "xfail" and _flavour() == "tuner":
                item.add_marker(pytest.mark.xfail(strict=True, reason=entry["reason"]))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_logreport(report: Any) -> None:
    if not _backend():
        return
    previous = _outcomes.get(report.nodeid)
    if previous in ("failed", "error"):
        return
    if report.failed:
        _outcomes[report.nodeid] = "failed" if report.when == "call" else "error"
        if str(report.longrepr).startswith("[XPASS(strict)]"):  # listed as failing, but passed
            _outcomes[report.nodeid] = "xpassed"
    elif report.when == "call" or report.skipped:
        if hasattr(report, "wasxfail"):
            _outcomes[report.nodeid] = "xfailed" if report.skipped else "xpassed"
        else:
            _outcomes[report.nodeid] = "skipped" if report.skipped else "passed"


if __name__ == "__main__":
    raise SystemExit(main())
