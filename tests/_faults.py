"""Fault injection for tests/service/test_faults.py: a TCP proxy whose connection can be cut, and small
filesystems that are full or read-only.

- :class:`CuttableProxy` forwards 127.0.0.1:<port> to a database server. ``cut()`` resets every
  open connection and refuses new ones (what workers see when the server is restarted or the
  network drops); ``restore()`` listens again on the same port.
- :func:`tiny_filesystem`: a tmpfs mounted for the test (``size`` bytes, or read-only), which is
  a real ENOSPC / EROFS for every process, root included. Needs mount rights (root in a
  container); elsewhere the test is skipped, or failed under CI.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Iterator, Optional


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: Optional[socket.socket] = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0

    def start(self) -> "CuttableProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    restore = start

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    close = cut


def proxied(url: str, proxy: CuttableProxy) -> str:
    """``url`` with its host:port replaced by the proxy's."""
    scheme, rest = url.split("://", 1)
    creds, _, tail = rest.rpartition("@")
    path = tail.split("/", 1)[1] if "/" in tail else ""
    return f"{scheme}://{creds + '@' if creds else ''}127.0.0.1:{proxy.port}/{path}"


def host_port(url: str) -> tuple[str, int]:
    tail = url.split("://", 1)[1].rpartition("@")[2].split("/", 1)[0]
    host, _, port = tail.partition(":")
    return host or "127.0.0.1", int(port) if port else (5432 if url.startswith("postgres") else 3306)


@contextlib.contextmanager
def tiny_filesystem(parent: Path, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``read_only``: mounted ro) under ``parent``; unmounted afterwards."""
    import pytest

    target = parent / f"fs-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs for the disk-fault test ({done.stderr.strip() or 'mount failed'})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI runs as root and must run it")
        pytest.skip(message)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
