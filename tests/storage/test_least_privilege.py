"""A worker needs no superuser: the grants of docs/distributed.md ("Database grants"), on PostgreSQL.

On a fresh database, an *owner* role (the database's owner: it alone may create tables) creates
Optuna's tables once; a *worker* role with LOGIN and only CONNECT, schema USAGE, SELECT / INSERT /
UPDATE / DELETE on the tables and USAGE / SELECT on the sequences (given through default privileges,
so the tables the owner creates later are covered too) then runs ``python -m tuner optimize`` on a
tiny grid to every cell COMPLETE, taking the study lock (``pg_advisory_lock``: no grant needed).
The worker cannot create tables, so opening the empty database as the worker is a one-line error.
Roles and database are dropped afterwards.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Iterator

import pytest

from _tiny import PG_URL, env_with_repo, require_server, unique, write_grid_study
from tuner.errors import TunerError
from tuner.storage import open_storage, resolve_url

pytestmark = [pytest.mark.db]

# The statements of docs/distributed.md, "Database grants" ({db}, {owner}, {worker} filled in).
ADMIN_SQL = """
CREATE ROLE {owner} LOGIN;
CREATE ROLE {worker} LOGIN;
CREATE DATABASE {db} OWNER {owner};
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT ON DATABASE {db} TO {worker};
"""
DATABASE_SQL = """
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {worker};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {worker};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {worker};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {worker};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {worker};
"""


def url_for(user: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(resolve_url(PG_URL)).set(username=user, password=None, database=database).render_as_string(
        hide_password=False)


def execute(url: str, sql: str) -> list:
    """Run ``sql`` (statements separated by ';') in autocommit; the last statement's rows."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(resolve_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    rows: list = []
    try:
        with engine.connect() as conn:
            for statement in (s.strip() for s in sql.split(";")):
                if statement:
                    result = conn.exec_driver_sql(statement)
                    rows = result.fetchall() if result.returns_rows else []
    finally:
        engine.dispose()
    return rows


@pytest.fixture
def roles() -> Iterator[dict]:
    require_server(PG_URL)
    tag = uuid.uuid4().hex[:8]
    names = {"db": f"tuner_lp_{tag}", "owner": f"tuner_owner_{tag}", "worker": f"tuner_worker_{tag}"}
    try:
        execute(PG_URL, ADMIN_SQL.format(**names))
        execute(url_for("postgres", names["db"]), DATABASE_SQL.format(**names))
        yield names
    finally:
        execute(PG_URL, f"DROP DATABASE IF EXISTS {names['db']} WITH (FORCE)")
        for role in (names["worker"], names["owner"]):
            execute(PG_URL, f"DROP ROLE IF EXISTS {role}")


@pytest.mark.slow
def test_a_grid_runs_to_complete_as_a_least_privilege_worker_role(roles, tmp_path, tiny_model_dir, tiny_data_dir):
    db, owner, worker = roles["db"], roles["owner"], roles["worker"]
    worker_url, owner_url = url_for(worker, db), url_for(owner, db)
    flags = execute(PG_URL, f"SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication "
                            f"FROM pg_roles WHERE rolname = '{worker}'")
    assert flags == [(False, False, False, False, False)]  # no superuser, nothing beyond LOGIN

    # Before the owner has created Optuna's tables, the worker cannot: a one-line error, nothing created.
    with pytest.raises(TunerError) as err:
        open_storage(worker_url, heartbeat_interval=None, grace_period=None)
    assert "permission denied" in str(err.value) and "\n" not in str(err.value)

    open_storage(owner_url, heartbeat_interval=None, grace_period=None).close()  # the owner: tables, once

    handle = open_storage(worker_url, heartbeat_interval=None, grace_period=None)
    try:
        with handle.lock("least-privilege-probe", timeout=10):  # advisory locks need no grant
            held = execute(worker_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
            assert held[0][0] >= 1
    finally:
        handle.close()
    with pytest.raises(Exception, match="permission denied"):
        execute(worker_url, "CREATE TABLE not_allowed (x int)")

    name = unique("least-privilege")
    study = write_grid_study(tmp_path, name, tiny_model_dir, tiny_data_dir, losses=("cos_mse", "cosent"),
                             datasets=("stsb",))
    result = subprocess.run([sys.executable, "-m", "tuner", "optimize", "--study", str(study), "--storage", worker_url,
                             "--workers", "2", "--heartbeat-interval", "1", "--grace-period", "3", "--json"],
                            cwd=tmp_path, env=env_with_repo(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout)
    assert status["grid"]["cells"] == 2 and status["grid"]["complete"] == 2 and status["grid"]["duplicates"] == 0
    assert status["counts"]["COMPLETE"] == 2
    tables = execute(url_for("postgres", db), "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [(owner,)]
