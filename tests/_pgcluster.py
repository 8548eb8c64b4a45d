"""A throwaway PostgreSQL cluster (``initdb`` in a temp folder, its own port) that a test may stop,
restart or put in a network namespace; the machine's own servers are never touched.

Needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``: the postgresql package CI installs). As
root the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, folder: Path, port: int, listen: str = "127.0.0.1", prefix: Sequence[str] = ()) -> None:
        self.folder, self.port, self.listen, self.prefix = folder, port, listen, list(prefix)
        self.data = folder / "data"

    def url(self, host: Optional[str] = None) -> str:
        return f"postgresql://postgres@{host or self.listen}:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*self.prefix, *user, *args], capture_output=True, text=True, check=check,
                              timeout=timeout)

    def init(self) -> "PgCluster":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '{self.listen}'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.folder}'\nfsync = off\nmax_connections = 300\n"
                       "shared_buffers = 32MB\n")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)


def available() -> Optional[str]:
    """None when a throwaway cluster can be made here, else why not."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (PostgreSQL server binaries)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is missing (needed to run PostgreSQL as the postgres user)"
    return None


@contextlib.contextmanager
def throwaway_cluster(listen: str = "127.0.0.1", port: Optional[int] = None,
                      prefix: Sequence[str] = ()) -> Iterator[PgCluster]:
    """Start a fresh cluster; stopped and deleted afterwards, also on failure."""
    folder = Path(tempfile.mkdtemp(prefix="tuner-pg-"))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PgCluster(folder, port or free_port(), listen, prefix)
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
