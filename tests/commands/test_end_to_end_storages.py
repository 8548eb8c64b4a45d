"""Every study command end to end through each storage kind: SQLite, PostgreSQL, MariaDB and the storage proxy.

``optimize`` (a 2-cell grid on the tiny random-init BERT, 2 worker processes), ``status`` and ``export`` run
as ``python -m tuner`` subprocesses; each must exit 0 with no traceback on stderr, and every cell must end
COMPLETE. (The proxy once ran every cell and then exited 1: the parent read the final status through the
handle it had closed while the workers ran.) The locked proxy (TLS + token) runs the same commands in
tests/storage/test_proxy_security.py.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from _pgcluster import free_port
from _tiny import MYSQL_URL, PG_URL, require_server, unique, write_grid_study
from test_proxy import drop_study, start_proxy_cli, stop, trials_of
from test_service import run_cli


def run_ok(args: list[str], cwd: Path, env: Optional[dict] = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m tuner ARGS``: exit 0 and no traceback on stderr."""
    result = run_cli(args, cwd, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args[0]} exited {result.returncode}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def grid_commands(tmp_path: Path, url: str, model_dir: Path, data_dir: Path, env: Optional[dict] = None,
                  direct: Optional[str] = None, name: Optional[str] = None) -> str:
    """optimize (2 cells, 2 workers), status and export of a new tiny grid study ``name`` through ``url``; checks
    every cell COMPLETE (read through ``direct``, the database itself, when given). Returns the study name."""
    name = name or unique("e2e")
    study = write_grid_study(tmp_path, name, model_dir, data_dir, losses=("cos_mse", "cosent"), datasets=("stsb",))
    result = run_ok(["optimize", "--study", str(study), "--storage", url, "--workers", "2",
                     "--heartbeat-interval", "1", "--grace-period", "3", "--json"], tmp_path, env)
    status = json.loads(result.stdout)
    assert status["grid"]["cells"] == 2 and status["grid"]["complete"] == 2, status
    assert status["worker_exit_codes"] == [0, 0], result.stderr[-3000:]
    states = [t.state.name for t in trials_of(direct or url, name)]
    assert states == ["COMPLETE", "COMPLETE"], states

    shown = run_ok(["status", "--study", str(study), "--storage", url], tmp_path, env)
    assert "2/2 cells complete" in shown.stdout, shown.stdout
    out = tmp_path / "export"
    run_ok(["export", "--study", str(study), "--storage", url, "--out", str(out), "--no-plots"], tmp_path, env)
    assert (out / "matrix.npy").is_file() and (out / "results.csv").is_file()
    return name


KINDS = [pytest.param("sqlite", id="sqlite"),
         pytest.param("postgresql", marks=pytest.mark.db, id="postgresql"),
         pytest.param("mariadb", marks=pytest.mark.db, id="mariadb"),
         pytest.param("proxy", id="proxy")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_optimize_status_export_exit_0_without_traceback(kind, tmp_path, tiny_model_dir, tiny_data_dir):
    if kind == "sqlite":
        grid_commands(tmp_path, f"sqlite:///{tmp_path / 'tuner.db'}", tiny_model_dir, tiny_data_dir)
        return
    if kind == "proxy":  # a real storage-proxy process in front of an SQLite file
        db = f"sqlite:///{tmp_path / 'proxied.db'}"
        port = free_port()
        log = tmp_path / "proxy.log"
        proxy = start_proxy_cli(db, port, log=log)
        try:
            grid_commands(tmp_path, f"grpc://127.0.0.1:{port}", tiny_model_dir, tiny_data_dir, direct=db)
        finally:
            stop(proxy)
        assert proxy.returncode == 0 and "Traceback" not in log.read_text(), log.read_text()[-3000:]
        return
    url = PG_URL if kind == "postgresql" else MYSQL_URL
    require_server(url)
    name = unique("e2e")
    try:
        grid_commands(tmp_path, url, tiny_model_dir, tiny_data_dir, name=name)
    finally:
        drop_study(url, name)
