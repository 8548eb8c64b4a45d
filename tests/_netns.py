"""Separate hosts on one machine: network namespaces joined by veth pairs and a bridge (tests/service/test_netns.py).

:func:`lab` builds a "database host" namespace (a bridge with ``DB_ADDR``) and one namespace per
"GPU host", each joined to the bridge by a veth pair, with addresses from ``SUBNET`` that exist
only inside these namespaces. Commands on a host run under ``ip netns exec`` and ``unshare --uts``
with the host's own hostname. Everything (processes inside, veths, namespaces) is removed at the
end, also on failure. Needs root (CI runs as root).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

SUBNET = "10.231.15"
DB_ADDR = f"{SUBNET}.1"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Host:
    name: str  # hostname inside its UTS namespace
    netns: str
    veth: str  # the host's end of its link
    addr: str

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run on this host: its network namespace, its own hostname."""
        return [*self.prefix(), "unshare", "--uts", "sh", "-c", f'hostname {self.name} && exec "$@"', "sh", *args]

    def link(self, up: bool) -> None:
        """Plug or unplug this host's network cable (its veth goes down: a partition)."""
        ip("-n", self.netns, "link", "set", self.veth, "up" if up else "down")

    def pids(self) -> list[int]:
        out = ip("netns", "pids", self.netns, check=False).stdout
        return [int(x) for x in out.split() if x.strip().isdigit()]

    def power_off(self) -> int:
        """SIGKILL every process of this host at once; returns how many."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


@dataclass
class Lab:
    db_netns: str
    hosts: list[Host] = field(default_factory=list)

    def db_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.db_netns]


def why_not() -> Optional[str]:
    """None when namespaces can be built here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    probe = f"t15p{uuid.uuid4().hex[:6]}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def lab(host_names: Sequence[str]) -> Iterator[Lab]:
    tag = uuid.uuid4().hex[:5]
    built = Lab(f"t15db{tag}")
    namespaces = [built.db_netns]
    try:
        ip("netns", "add", built.db_netns)
        ip("-n", built.db_netns, "link", "set", "lo", "up")
        ip("-n", built.db_netns, "link", "add", "br0", "type", "bridge")
        ip("-n", built.db_netns, "addr", "add", f"{DB_ADDR}/24", "dev", "br0")
        ip("-n", built.db_netns, "link", "set", "br0", "up")
        for i, name in enumerate(host_names):
            host = Host(name, f"t15h{i}{tag}", f"eth{i}{tag}", f"{SUBNET}.{11 + i}")
            namespaces.append(host.netns)
            ip("netns", "add", host.netns)
            ip("-n", host.netns, "link", "set", "lo", "up")
            # the pair is made inside the host's namespace; its far end moves to the database host
            ip("-n", host.netns, "link", "add", host.veth, "type", "veth", "peer", "name", f"p{i}{tag}")
            ip("-n", host.netns, "link", "set", f"p{i}{tag}", "netns", built.db_netns)
            ip("-n", built.db_netns, "link", "set", f"p{i}{tag}", "master", "br0")
            ip("-n", built.db_netns, "link", "set", f"p{i}{tag}", "up")
            ip("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", host.veth)
            ip("-n", host.netns, "link", "set", host.veth, "up")
            built.hosts.append(host)
        yield built
    finally:
        for ns in reversed(namespaces):
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(namespaces):
            ip("netns", "del", ns, check=False)
