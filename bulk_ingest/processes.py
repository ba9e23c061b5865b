"""Starting the service's own processes (gateway, workers, consumers) as real subprocesses.

The run command and the end-to-end tests use the same code, so a test can SIGKILL a worker just
as an operator's crash would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bulk_ingest.settings import PREFIX, Settings
from stack import StackConfig


def stack_config(settings: Settings) -> StackConfig:
    # The stack's brokers take consecutive port pairs from the first bootstrap server's port.
    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    url = make_url(settings.database_url)
    return StackConfig(
        state_dir=settings.state_dir,
        cache_dir=settings.cache_dir,
        kafka_version=settings.kafka_version,
        kafka_host=host or "127.0.0.1",
        kafka_port=int(port),
        kafka_controller_port=settings.kafka_controller_port,
        kafka_brokers=settings.kafka_brokers,
        pg_host=url.host or "127.0.0.1",
        pg_port=url.port or 5432,
        pg_user=url.username or "bulk_ingest",
        pg_password=url.password or "bulk_ingest",
        pg_database=url.database or "bulk_ingest",
        registry_port=settings.schema_registry_port,
    )


def settings_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    for name, value in settings.__dict__.items():
        if isinstance(value, tuple):
            value = ",".join(value)
        env[PREFIX + name.upper()] = str(value)
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class ServiceProcess:
    role: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash the invariants are tested against."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, grace_seconds: float = 15) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    role: str,
    settings: Settings,
    log_dir: Path,
    *,
    name: str | None = None,
    env_overrides: Mapping[str, str] | None = None,
) -> ServiceProcess:
    """Start ``bulk-ingest <role>`` with these settings, output appended to a log file."""
    name = name or role
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    env = settings_environment(settings, **dict(env_overrides or {}))
    env.setdefault(PREFIX + "WORKER_ID", name)
    if role == "worker":
        env[PREFIX + "WORKER_ID"] = name
    with log_path.open("ab") as log_file:
        log_file.write(f"--- {time.strftime('%H:%M:%S')} starting {name}\n".encode())
        process = subprocess.Popen(
            [sys.executable, "-m", "bulk_ingest.cli", role],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ServiceProcess(name, process, log_path)


# Exit codes with which a worker asks to be started again (streams/app.py).
RESTART_EXIT_CODES = frozenset({70, 75})


class Supervisor:
    """Keeps workers and consumers running: a process that exits is started again.

    ``restart_all`` (the run command) restarts any exit; otherwise only the exits by which a
    process asks for it (stall watchdog, unexpected failure), so a test that SIGKILLs a process
    decides itself when it comes back. The gateway is not supervised here.
    """

    def __init__(
        self, settings: Settings, log_dir: Path, *, restart_all: bool, say: Any = print
    ) -> None:
        self._settings = settings
        self._log_dir = log_dir
        self._restart_all = restart_all
        self._say = say
        self.processes: list[ServiceProcess] = []

    def start(self, role: str, name: str) -> ServiceProcess:
        process = spawn(role, self._settings, self._log_dir, name=name)
        self.processes = [p for p in self.processes if p.role != name] + [process]
        return process

    def named(self, name: str) -> ServiceProcess:
        return next(p for p in self.processes if p.role == name)

    def check(self) -> None:
        """Restart what exited (call this periodically)."""
        for process in list(self.processes):
            code = process.process.poll()
            if code is None:
                continue
            if self._restart_all or code in RESTART_EXIT_CODES:
                self._say(f"{process.role} exited ({code}); restarting it")
                role = "worker" if process.role.startswith("worker") else process.role
                self.start(role, process.role)

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()
