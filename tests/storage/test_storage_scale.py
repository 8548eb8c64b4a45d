"""A small run of bench/storage_scale.py (issue #15, part 2): 32 worker processes with the synthetic
objective on PostgreSQL and through the storage proxy, each run until 32 trials are COMPLETE (up to
300 s on a busy machine); no grid cell completes twice, no trial told COMPLETE is lost, nothing is left RUNNING, and every worker exited cleanly."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from _tiny import PG_URL, REPO, env_with_repo, require_server

pytestmark = [pytest.mark.slow, pytest.mark.db]


def test_32_workers_on_postgresql_and_proxy_no_duplicates_no_lost_trials(tmp_path):
    require_server(PG_URL)
    out = tmp_path / "scale"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "storage_scale.py"), "--backends", "postgresql,proxy",
                             "--workers", "32", "--samplers", "grid", "--window", "10", "--until-complete", "32",
                             "--out", str(out)],
                            cwd=tmp_path, env=env_with_repo(), capture_output=True, text=True, timeout=600)
    assert out.with_suffix(".json").exists(), result.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["backend"], r["workers"]) for r in rows] == [("postgresql", 32), ("proxy", 32)]
    for r in rows:
        assert r["told_complete"] > 0, r  # the run really ran trials
        assert r["duplicates"] == 0 and r["lost"] == 0, r
        assert r["worker_errors"] == 0, r["first_error"]
        assert set(r["worker_exit_codes"]) <= {"0", "130"}, r["worker_exit_codes"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| postgresql | grid | 32 |" in out.with_suffix(".md").read_text()
