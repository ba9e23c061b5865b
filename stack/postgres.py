"""A real PostgreSQL from Debian's ``postgresql`` package, managed with ``pg_ctlcluster``.

The stack uses the cluster listening on ``config.pg_port`` (creating ``<version>/main`` only
when the machine has no cluster at all). It starts the cluster only when it is down, and then
leaves a marker in ``state_dir/postgres`` so that ``stack_down`` stops only what ``up`` started.
When the stack starts or restarts it, ``listen_addresses`` (loopback) and ``max_connections``
are passed on the server's command line; no file under ``/etc`` is edited. Role and database
are created idempotently through ``psql`` as ``postgres``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from stack.config import ServiceStatus, StackConfig, StackError
from stack.process import poll_until, read_pid_file, run_command

READY_TIMEOUT_SECONDS = 60.0
MAX_CONNECTIONS = 200
_MARKER_NAME = "started-by-stack"
_SERVER_TOOLS = ("pg_lsclusters", "pg_ctlcluster", "pg_isready")

# Creates the login role and its database only when missing; re-applies password and CREATEDB
# so a changed password in the configuration takes effect.
_ROLE_AND_DATABASE_SQL = """
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
ALTER ROLE :"role" WITH LOGIN CREATEDB PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \\gexec
"""

Log = Callable[[str], None]


@dataclass(frozen=True)
class Cluster:
    """One line of ``pg_lsclusters``."""

    version: str
    name: str
    port: int
    online: bool
    data_dir: Path

    @property
    def label(self) -> str:
        return f"{self.version}/{self.name}"


# --- discovery ---------------------------------------------------------------------------------


def server_tools_installed() -> bool:
    return all(shutil.which(tool) for tool in _SERVER_TOOLS)


def ensure_installed(log: Log) -> None:
    """Install Debian's ``postgresql`` with apt when its cluster tools are missing."""
    if server_tools_installed():
        return
    if os.geteuid() != 0:
        raise StackError(
            "PostgreSQL is not installed and installing it needs root; run "
            "`sudo apt-get install -y postgresql` and try again"
        )
    log("installing PostgreSQL with apt-get (once)")
    hint = "check the network and the apt sources, or install `postgresql` yourself"
    run_command(["apt-get", "update"], action="apt-get update", hint=hint, timeout=600)
    run_command(
        ["apt-get", "install", "-y", "postgresql"],
        action="installing PostgreSQL with apt-get",
        hint=hint,
        timeout=900,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def list_clusters() -> list[Cluster]:
    output = run_command(
        ["pg_lsclusters", "--no-header"],
        action="listing PostgreSQL clusters",
        hint="check that the postgresql-common package is intact",
    )
    return [_parse_cluster_line(line) for line in output.splitlines() if line.strip()]


def _parse_cluster_line(line: str) -> Cluster:
    version, name, port, state, _owner, data_dir, *_ = line.split()
    return Cluster(
        version=version,
        name=name,
        port=int(port),
        online=state.startswith("online"),
        data_dir=Path(data_dir),
    )


def find_cluster(config: StackConfig) -> Cluster | None:
    """The cluster configured for ``config.pg_port``, or None."""
    return next((c for c in list_clusters() if c.port == config.pg_port), None)


def ensure_cluster(config: StackConfig, log: Log) -> Cluster:
    """The cluster on ``config.pg_port``; creates ``<version>/main`` on a machine with none."""
    cluster = find_cluster(config)
    if cluster is not None:
        return cluster
    existing = list_clusters()
    if existing:
        listed = ", ".join(f"{c.label} on port {c.port}" for c in existing)
        raise StackError(
            f"no PostgreSQL cluster uses port {config.pg_port} (found {listed}); set the stack's "
            f"PostgreSQL port to one of those, or create one with "
            f"`pg_createcluster --port {config.pg_port} <version> <name>`"
        )
    version = _newest_installed_version()
    log(f"creating PostgreSQL cluster {version}/main on port {config.pg_port}")
    run_command(
        ["pg_createcluster", "--port", str(config.pg_port), version, "main"],
        action=f"creating PostgreSQL cluster {version}/main",
        hint="see the message above; `pg_lsclusters` shows what exists",
    )
    created = find_cluster(config)
    if created is None:
        raise StackError(f"pg_createcluster succeeded but no cluster uses port {config.pg_port}")
    return created


def _newest_installed_version() -> str:
    versions = [p.name for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit()]
    if not versions:
        raise StackError("no server binaries in /usr/lib/postgresql; reinstall `postgresql`")
    return max(versions, key=int)


# --- marker: did the stack start it? ----------------------------------------------------------
# The marker records the postmaster pid the stack started. It counts only while that very server
# runs, so a cluster restarted by someone else since (or started at boot) is never ours to stop.


def _marker(config: StackConfig) -> Path:
    return config.postgres_dir / _MARKER_NAME


def _write_marker(config: StackConfig, cluster: Cluster) -> None:
    pid = read_pid_file(cluster.data_dir / "postmaster.pid")
    config.postgres_dir.mkdir(parents=True, exist_ok=True)
    _marker(config).write_text(f"{cluster.label} {cluster.port} {pid}\n")


def _marker_pid(config: StackConfig) -> int | None:
    try:
        return int(_marker(config).read_text().split()[2])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _started_by_stack(config: StackConfig, cluster: Cluster | None) -> bool:
    running_pid = postmaster_pid(cluster) if cluster is not None else None
    return running_pid is not None and running_pid == _marker_pid(config)


# --- status ------------------------------------------------------------------------------------


def postmaster_pid(cluster: Cluster) -> int | None:
    return read_pid_file(cluster.data_dir / "postmaster.pid") if cluster.online else None


def status(config: StackConfig) -> ServiceStatus:
    if not server_tools_installed():
        return _status(config, None, detail="PostgreSQL is not installed")
    cluster = find_cluster(config)
    if cluster is None:
        return _status(config, None, detail="no cluster on this port")
    return _status(
        config, cluster, detail=f"cluster {cluster.label}" + ("" if cluster.online else ", down")
    )


def _status(config: StackConfig, cluster: Cluster | None, *, detail: str) -> ServiceStatus:
    return ServiceStatus(
        name="postgres",
        running=cluster is not None and cluster.online,
        pid=postmaster_pid(cluster) if cluster is not None else None,
        address=config.pg_address,
        detail=detail,
        started_by_stack=_started_by_stack(config, cluster),
    )


# --- start, readiness, stop --------------------------------------------------------------------


def start(config: StackConfig, log: Log) -> ServiceStatus:
    """Make the cluster run, reachable with the configured role and database."""
    began = time.monotonic()
    ensure_installed(log)
    cluster = ensure_cluster(config, log)
    started_now = not cluster.online and _start_cluster(config, cluster)
    if started_now:
        _write_marker(config, cluster)
    wait_ready(config)
    ensure_role_and_database(config)
    check_login(config)
    current = status(config)
    verb = "ready" if started_now else "already running"
    owner = "" if current.started_by_stack else ", not started by the stack"
    log(
        f"postgresql {cluster.label} {verb} on {config.pg_address} "
        f"(pid {current.pid}{owner}, {time.monotonic() - began:.1f} s)"
    )
    return current


def _start_cluster(config: StackConfig, cluster: Cluster) -> bool:
    """Start ``cluster``; False when someone else started it in the meantime."""
    try:
        _pg_ctlcluster(config, cluster, "start")
    except StackError:
        if _is_online(cluster):
            return False
        raise
    return True


def _server_options(config: StackConfig) -> list[str]:
    """Settings given on the server's command line, so no file under /etc is edited."""
    settings = {"listen_addresses": config.pg_host, "max_connections": str(MAX_CONNECTIONS)}
    return [arg for name, value in settings.items() for arg in ("-o", f"-c {name}={value}")]


def _pg_ctlcluster(
    config: StackConfig, cluster: Cluster, action: str, mode: str | None = None
) -> None:
    options = _server_options(config) if action in ("start", "restart") else []
    if mode is not None:
        options = [*options, "--mode", mode]
    run_command(
        ["pg_ctlcluster", *options, cluster.version, cluster.name, action],
        action=f"pg_ctlcluster {cluster.label} {action}",
        hint=f"see /var/log/postgresql/postgresql-{cluster.version}-{cluster.name}.log",
    )


def _is_online(cluster: Cluster) -> bool:
    return any(c.label == cluster.label and c.online for c in list_clusters())


def wait_ready(config: StackConfig) -> None:
    """Poll ``pg_isready`` on the configured address until it accepts connections."""
    command = ["pg_isready", "-q", "-h", config.pg_host, "-p", str(config.pg_port), "-t", "2"]

    def accepting() -> bool:
        try:
            run_command(command, action="pg_isready", hint="", timeout=10)
        except StackError:
            return False
        return True

    if not poll_until(accepting, READY_TIMEOUT_SECONDS):
        raise StackError(
            f"PostgreSQL does not accept connections on {config.pg_address} after "
            f"{READY_TIMEOUT_SECONDS:.0f} s; check its log under /var/log/postgresql/ and that "
            f"listen_addresses includes {config.pg_host}"
        )


def ensure_role_and_database(config: StackConfig) -> None:
    psql = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    variables = {
        "role": config.pg_user,
        "password": config.pg_password,
        "database": config.pg_database,
    }
    run_command(
        [
            *psql,
            *("-p", str(config.pg_port), "-d", "postgres"),
            *(arg for name, value in variables.items() for arg in ("-v", f"{name}={value}")),
        ],
        stdin=_ROLE_AND_DATABASE_SQL,
        action=f"creating role {config.pg_user} and database {config.pg_database}",
        hint="run it again as root; the psql message above names the problem",
    )


def check_login(config: StackConfig) -> None:
    """Log in the way the application will, so a bad pg_hba.conf shows up here, not later."""
    try:
        with psycopg.connect(
            host=config.pg_host,
            port=config.pg_port,
            user=config.pg_user,
            password=config.pg_password,
            dbname=config.pg_database,
            connect_timeout=5,
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        raise StackError(
            f"cannot log in to {config.pg_database} on {config.pg_address} as {config.pg_user}: "
            f"{exc}; pg_hba.conf must allow password (scram-sha-256) logins from {config.pg_host}"
        ) from exc


def stop(config: StackConfig, log: Log) -> bool:
    """Stop the cluster only if this stack started the running server; returns whether it did."""
    cluster = find_cluster(config) if server_tools_installed() else None
    ours = _started_by_stack(config, cluster)
    _marker(config).unlink(missing_ok=True)
    if not ours or cluster is None:
        return False
    began = time.monotonic()
    _pg_ctlcluster(config, cluster, "stop")
    log(f"postgresql {cluster.label} stopped ({time.monotonic() - began:.1f} s)")
    return True


def restart(config: StackConfig, log: Log, *, mode: str = "fast") -> ServiceStatus:
    """``pg_ctlcluster restart`` and wait until it accepts logins again.

    ``mode`` is the shutdown mode: ``fast`` (roll back and disconnect clients, checkpoint) or
    ``immediate`` (abort every server process at once, like a power cut: crash recovery from
    the WAL on start). A server the stack started stays the stack's after the restart; any other
    stays not ours.
    """
    cluster = ensure_cluster(config, log)
    ours = _started_by_stack(config, cluster)
    began = time.monotonic()
    _pg_ctlcluster(config, cluster, "restart", mode)
    if ours:
        _write_marker(config, cluster)
    wait_ready(config)
    check_login(config)
    log(f"postgresql {cluster.label} restarted ({time.monotonic() - began:.1f} s)")
    return status(config)
