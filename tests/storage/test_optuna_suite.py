"""Optuna's own storage test suite against tuner's storages, for every backend tuner builds.

scripts/optuna_storage_suite.py runs the installed Optuna version's ``tests/storages_tests`` (its
sdist, downloaded once into ~/.cache/tuner) with every RDB storage built as ``open_storage`` builds
it: SQLite files (plain and behind Optuna's ``_CachedStorage``), PostgreSQL, MariaDB, and tuner's
gRPC proxy with tuner's client in front of each. The three backends run at once (the suite mostly
sleeps in heartbeat tests).

Required: no test fails for tuner's reasons. A test that fails with tuner's storage is run again
with Optuna's plain ``RDBStorage`` on the same backend; a failure both have is the backend's or
the environment's, not tuner's (reported, not failed). ``TUNER_ONLY`` lists the failures that are
tuner's by design, each with its reason; they run as ``xfail(strict=True)``, so one that starts
passing fails here until it is taken off the list. ``DESELECTED`` lists the tests left out, with why.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from _tiny import MYSQL_URL, PG_URL, load_script, require_server

REPO = Path(__file__).resolve().parents[2]
HEARTBEAT = "tests/storages_tests/test_heartbeat.py"
SERVERS = ("postgresql", "mysql")

# (backends, node-id pattern, why it fails with tuner's storage and not with plain RDBStorage)
TUNER_ONLY = [
    (("sqlite", "postgresql", "mysql"), f"{HEARTBEAT}::test_heartbeat_experimental_warnings[[]*]",
     "by design: open_storage silences Optuna's heartbeat ExperimentalWarning (tuner turns heartbeats on, not its "
     "user; tests/storage/test_storage_contract.py); TunerRDBStorage(...) built directly still warns"),
    (("sqlite",), "tests/storages_tests/rdb_tests/test_storage.py::test_engine_kwargs",
     "tuner's in-memory SQLite is one connection shared by threads (StaticPool), which takes no pool_size; "
     "open_storage passes no engine arguments for SQLite"),
]
# (backends, node-id pattern, why it is not run)
DESELECTED = [
    (SERVERS, f"{HEARTBEAT}::*cached_sqlite*",
     "the _CachedStorage copies of the heartbeat tests (each sleeps 3-15 s) test a backend-independent wrapper: "
     "run on sqlite, and uncached on the servers"),
]


@pytest.fixture(scope="module")
def suite() -> ModuleType:
    return load_script("optuna_storage_suite")


def listed_for(backend: str) -> list[dict]:
    return ([{"glob": g, "reason": r, "action": "xfail"} for b, g, r in TUNER_ONLY if backend in b]
            + [{"glob": g, "reason": r, "action": "deselect"} for b, g, r in DESELECTED if backend in b])


@pytest.fixture(scope="module")
def runs(request, suite) -> dict:
    """The tuner-flavour run of every backend this session selected, started together."""
    wanted = [b for b in suite.BACKENDS
              if any(item.module.__name__ == __name__ and item.callspec.params.get("backend") == b
                     for item in request.session.items if hasattr(item, "callspec"))]
    for backend in wanted:
        if backend in SERVERS:
            require_server(PG_URL if backend == "postgresql" else MYSQL_URL)
    suite.optuna_tests()  # download once, before the runs share the cache
    started = {b: suite.start_suite(b, "tuner", listed=listed_for(b)) for b in wanted}
    return {b: suite.collect(r, timeout=2400) for b, r in started.items()}


@pytest.mark.slow
@pytest.mark.timeout(2700)  # the first one waits for all three runs (about 10 min on a loaded 2-core machine)
@pytest.mark.parametrize("backend", [pytest.param("sqlite"),
                                     pytest.param("postgresql", marks=pytest.mark.db),
                                     pytest.param("mysql", marks=pytest.mark.db)])
def test_optuna_storage_suite_has_no_tuner_only_failure(backend, runs, suite, capsys):
    tuner = runs[backend]
    assert tuner.outcomes and tuner.count("passed") > 150, f"the suite did not run:\n{tuner.output[-4000:]}"
    expected = {g for b, g, _ in TUNER_ONLY if backend in b}
    failed = sorted(tuner.failed)
    plain = suite.run_suite(backend, "plain", listed=listed_for(backend), select=failed) if failed else None
    tuner_only = sorted(set(failed) - (plain.failed if plain else set()))
    with capsys.disabled():
        print(f"\n{backend}: tuner {tuner.summary()}; failing with plain RDBStorage too: "
              f"{len(failed) - len(tuner_only)}; tuner-only: {len(tuner_only)}")
    assert not tuner_only, ("fail with tuner's storage, pass with plain RDBStorage (fix, or list in TUNER_ONLY with "
                            "the reason):\n" + "\n".join(f"{tuner.outcomes[n]} {n}" for n in tuner_only)
                            + "\n" + tuner.output[-6000:])
    if expected:
        assert tuner.count("xfailed") >= len(expected), "a TUNER_ONLY entry matched no test: update the list"
