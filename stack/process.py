"""Process and port helpers shared by the Kafka and PostgreSQL halves of the stack.

Liveness is read from ``/proc`` because a detached broker outlives the process that started it
and may end up a zombie under an init that does not reap: a zombie counts as dead here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from stack.config import StackError

POLL_INTERVAL_SECONDS = 0.1
_TCP_LISTEN_STATE = "0A"


def poll_until(check: Callable[[], bool], timeout: float) -> bool:
    """Call ``check`` until it returns true or ``timeout`` seconds pass; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_SECONDS)


def is_alive(pid: int) -> bool:
    """True while any thread of ``pid`` is not a zombie (zombies we parented are reaped on the
    way). A SIGKILLed JVM's main thread turns zombie before its other threads have exited and
    closed its sockets, so the main thread's state alone would call it dead too early."""
    _reap_if_child(pid)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(_state(task / "stat") not in (None, "Z", "X") for task in tasks)


def _state(stat_file: Path) -> str | None:
    try:
        stat = stat_file.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _reap_if_child(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def describe_process(pid: int) -> str:
    """``pid 42 (java ... kafka.Kafka /x/server.properties)`` for error messages."""
    args = command_line(pid)
    shown = " ".join([args[0], "...", *args[-2:]]) if len(args) > 4 else " ".join(args)
    return f"pid {pid} ({shown})" if shown else f"pid {pid}"


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the kernel if we die)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_pid_file(path: Path) -> int | None:
    """The pid on the first line of ``path`` (PostgreSQL's postmaster.pid has more lines)."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (FileNotFoundError, PermissionError, ValueError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (any address), if it is visible to us."""
    inodes = _listening_socket_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _holds_any_socket(proc, inodes):
            return int(proc.name)
    return None


def _listening_socket_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == _TCP_LISTEN_STATE:
                    inodes.add(fields[9])
    return inodes


def _holds_any_socket(proc: Path, inodes: set[str]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        return any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir())
    except OSError:
        return False


def terminate(pid: int, grace_seconds: float) -> None:
    """SIGTERM ``pid``, wait up to ``grace_seconds`` for it to exit, then SIGKILL it (at once
    when ``grace_seconds`` is 0)."""
    if grace_seconds > 0:
        _signal(pid, signal.SIGTERM)
        if poll_until(lambda: not is_alive(pid), grace_seconds):
            return
    _signal(pid, signal.SIGKILL)
    if not poll_until(lambda: not is_alive(pid), 10.0):
        raise StackError(f"{describe_process(pid)} survived SIGKILL; check it with `ps -p {pid}`")


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def require_executable(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` is not on PATH; {install_hint}")
    return path


def run_command(
    args: Sequence[str],
    *,
    action: str,
    hint: str,
    timeout: float = 120.0,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``args`` to completion and return stdout; on failure raise a StackError naming
    ``action``, the command's last output lines and ``hint`` (what the user should do)."""
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{action} timed out after {timeout:.0f} s; {hint}") from exc
    if done.returncode != 0:
        output = tail_text(done.stdout + done.stderr, 20)
        raise StackError(
            f"{action} failed (exit {done.returncode}): `{' '.join(args)}`\n{output}\n{hint}"
        )
    return done.stdout


def tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def tail_file(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist yet."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return tail_text(text, lines)
