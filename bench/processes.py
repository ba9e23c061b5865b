"""The processes of one side of a benchmark, found through /proc: pause, resume, CPU time.

A side is named by the ports its servers listen on (Kafka, PostgreSQL, Kafka Connect, ...) and
the process trees it started (``bulk-ingest up``); every descendant belongs to it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """The process holding a listening TCP socket on ``port`` (IPv4 or IPv6), if any."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


def _parents() -> dict[int, int]:
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def with_descendants(roots: Iterable[int]) -> set[int]:
    parents = _parents()
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, with that of its children it has waited for (a
    PostgreSQL postmaster reaps its backends: their time lands here)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def command_line(pid: int) -> list[str]:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def environment(pid: int) -> dict[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@dataclass
class Side:
    """One side of a benchmark: its servers (by port) and its process trees."""

    name: str
    ports: Mapping[str, int]  # label → port of a server that belongs to this side
    roots: list[int] = field(default_factory=list)  # process trees started for this side

    def pids(self) -> set[int]:
        servers = [pid for pid in (listening_pid(p) for p in self.ports.values()) if pid]
        return with_descendants([*servers, *self.roots])

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def cpu_by_role(self, roles: Mapping[int, str]) -> dict[str, float]:
        """CPU seconds so far per role; ``roles`` names the processes that head a role (a
        server, a worker); their descendants count towards it."""
        parents = _parents()
        totals: dict[str, float] = {}
        for pid in self.pids():
            role = _role_of(pid, roles, parents)
            if role is not None:
                totals[role] = totals.get(role, 0.0) + cpu_seconds(pid)
        return totals


def _role_of(pid: int, roles: Mapping[int, str], parents: Mapping[int, int]) -> str | None:
    while pid > 1:
        if pid in roles:
            return roles[pid]
        pid = parents.get(pid, 1)
    return None
