"""One real KRaft Kafka node (a combined broker and controller) run from Maven Central jars with
``java -cp``; :mod:`stack.kafka_cluster` runs one of them or a cluster.

Layout of a node, under its folder (``state_dir/kafka`` alone, ``state_dir/kafka-cluster/node-N``
in a cluster): ``server.properties``, ``log4j2.properties``, ``kafka.pid``, ``data/`` and
``logs/``. A node runs detached in its own session so it outlives the command that started it;
it is ours only if its pid file names a live ``kafka.Kafka`` java process whose command line
carries that node's ``server.properties``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bulk_ingest.replication import replication_for
from stack.config import BrokerNode, ServiceStatus, StackConfig, StackError
from stack.kafka_jars import classpath, ensure_jars
from stack.process import (
    command_line,
    describe_process,
    is_alive,
    listening_pid,
    poll_until,
    port_is_open,
    read_pid_file,
    require_executable,
    run_command,
    tail_file,
    terminate,
    write_pid_file,
)

STOP_GRACE_SECONDS = 30.0
PORTS_CLOSE_SECONDS = 15.0
_MAIN_CLASS = "kafka.Kafka"
_PACKAGE_DIR = Path(__file__).resolve().parent
_JAVA_HINT = "install a Java 17+ runtime, e.g. `apt-get install -y openjdk-17-jre-headless`"

Log = Callable[[str], None]


@dataclass(frozen=True)
class KafkaLaunch:
    """A node that ``launch`` found running or just started, not yet known to be ready."""

    node: BrokerNode
    pid: int
    started_now: bool
    started_at: float


# --- paths -------------------------------------------------------------------------------------


def _server_properties(node: BrokerNode) -> Path:
    return node.directory / "server.properties"


def _log4j_properties(node: BrokerNode) -> Path:
    return node.directory / "log4j2.properties"


def _pid_file(node: BrokerNode) -> Path:
    return node.directory / "kafka.pid"


def _data_dir(node: BrokerNode) -> Path:
    return node.directory / "data"


def server_log(node: BrokerNode) -> Path:
    return node.directory / "logs" / "server.log"


def _stdout_log(node: BrokerNode) -> Path:
    return node.directory / "logs" / "stdout.log"


def log_tails(node: BrokerNode) -> str:
    return (
        f"Last lines of {server_log(node)}:\n{tail_file(server_log(node), 25)}\n"
        f"Last lines of {_stdout_log(node)}:\n{tail_file(_stdout_log(node), 10)}"
    )


# --- ownership and status ----------------------------------------------------------------------


def node_pid(node: BrokerNode) -> int | None:
    """The pid of this node as this stack started it, if it is alive."""
    pid = read_pid_file(_pid_file(node))
    if pid is None or not is_alive(pid) or not _is_ours(node, pid):
        return None
    return pid


def has_pid_file(node: BrokerNode) -> bool:
    return _pid_file(node).is_file()


def unexpected_death(node: BrokerNode) -> str | None:
    """How this node died, if it did without being stopped; else None.

    ``stop`` removes the pid file, so a pid file naming a process that is gone means the node
    died on its own (a crash, the kernel's OOM killer). When the node is our child its exit
    status is read here, before anything else reaps it.
    """
    pid = read_pid_file(_pid_file(node))
    if pid is None:
        return None
    how = _reaped_exit_status(pid)
    if how is None and is_alive(pid):
        return None
    return f"kafka node {node.node_id} (pid {pid}) {how or 'exited'} without being stopped. " + (
        log_tails(node)
    )


def _reaped_exit_status(pid: int) -> str | None:
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return None
    if reaped == 0:
        return None
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _is_ours(node: BrokerNode, pid: int) -> bool:
    args = command_line(pid)
    return _MAIN_CLASS in args and str(_server_properties(node)) in args


def status(config: StackConfig, node: BrokerNode, name: str) -> ServiceStatus:
    pid = node_pid(node)
    if pid is not None:
        detail = f"kafka {config.kafka_version}, state in {node.directory}"
        if not port_is_open(node.host, node.port):
            detail += "; process alive but port not open yet"
        return _status(name, node, running=True, pid=pid, detail=detail, ours=True)
    if port_is_open(node.host, node.port):
        foreign = listening_pid(node.port)
        owner = describe_process(foreign) if foreign else "an unknown process"
        detail = f"port served by {owner}, not started by this stack"
        return _status(name, node, running=True, pid=foreign, detail=detail, ours=False)
    return _status(name, node, running=False, pid=None, detail="not running", ours=False)


def _status(
    name: str, node: BrokerNode, *, running: bool, pid: int | None, detail: str, ours: bool
) -> ServiceStatus:
    return ServiceStatus(
        name=name,
        running=running,
        pid=pid,
        address=node.address,
        detail=detail,
        started_by_stack=ours,
    )


# --- configuration and storage -----------------------------------------------------------------


def render_config_files(config: StackConfig, node: BrokerNode) -> tuple[str, str]:
    """The text of ``server.properties`` and ``log4j2.properties`` for ``node`` of ``config``."""
    replication = replication_for(config.kafka_brokers)
    voters = ",".join(f"{n.node_id}@{n.controller_address}" for n in config.kafka_nodes)
    server = _render(
        "kafka-server.properties",
        node_id=str(node.node_id),
        voters=voters,
        host=node.host,
        port=str(node.port),
        controller_port=str(node.controller_port),
        data_dir=str(_data_dir(node)),
        replication_factor=str(replication.factor),
        min_insync=str(replication.min_insync),
    )
    logging = _render("kafka-log4j2.properties", log_file=str(server_log(node)))
    return server, logging


def _render(template_name: str, **values: str) -> str:
    return Template((_PACKAGE_DIR / template_name).read_text()).substitute(values)


def _write_config_files(config: StackConfig, node: BrokerNode) -> None:
    server, logging = render_config_files(config, node)
    for directory in (node.directory, _data_dir(node), server_log(node).parent):
        directory.mkdir(parents=True, exist_ok=True)
    _server_properties(node).write_text(server)
    _log4j_properties(node).write_text(logging)


def _check_running_config_matches(config: StackConfig, node: BrokerNode) -> None:
    server, _ = render_config_files(config, node)
    if _server_properties(node).read_text() != server:
        raise StackError(
            f"the running Kafka node in {node.directory} uses other settings than requested "
            "(ports, paths or broker count changed); run `bulk-ingest stack down` and `up` again"
        )


def _ensure_formatted(config: StackConfig, node: BrokerNode, java: str, cluster_id: str) -> None:
    if (_data_dir(node) / "meta.properties").is_file():
        return
    run_command(
        [
            java,
            "-Xmx256m",
            "-cp",
            classpath(config),
            f"-Dlog4j2.configurationFile={_log4j_properties(node)}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(_server_properties(node)),
        ],
        action=f"formatting the storage of Kafka node {node.node_id}",
        hint=f"see {server_log(node)}; deleting {_data_dir(node)} starts it from scratch",
    )


# --- start and stop ----------------------------------------------------------------------------


def launch(config: StackConfig, node: BrokerNode, cluster_id: str, log: Log) -> KafkaLaunch:
    """Start the node detached unless ours already runs; does not wait for readiness.

    ``cluster_id`` formats its storage the first time (every node of a cluster shares one).
    """
    pid = node_pid(node)
    if pid is not None:
        _check_running_config_matches(config, node)
        return KafkaLaunch(node, pid, started_now=False, started_at=time.monotonic())
    adopted = _adopt_unrecorded(node)
    if adopted is not None:
        return KafkaLaunch(node, adopted, started_now=False, started_at=time.monotonic())
    _refuse_foreign_listeners(node)
    java = require_executable("java", _JAVA_HINT)
    started_at = time.monotonic()
    ensure_jars(config, log)
    _write_config_files(config, node)
    _ensure_formatted(config, node, java, cluster_id)
    pid = _spawn(config, node, java)
    write_pid_file(_pid_file(node), pid)
    return KafkaLaunch(node, pid, started_now=True, started_at=started_at)


def _adopt_unrecorded(node: BrokerNode) -> int | None:
    """Our own node listening without a valid pid file (the file was lost or overwritten)."""
    pid = listening_pid(node.port)
    if pid is None or not _is_ours(node, pid):
        return None
    write_pid_file(_pid_file(node), pid)
    return pid


def _refuse_foreign_listeners(node: BrokerNode) -> None:
    for port in (node.port, node.controller_port):
        if port_is_open(node.host, port):
            foreign = listening_pid(port)
            owner = describe_process(foreign) if foreign else "a process we cannot see"
            raise StackError(
                f"{node.host}:{port} is already served by {owner}, which this stack did not "
                f"start for {node.directory} (another broker count or state folder?); stop "
                "that process (`bulk-ingest stack down`) or configure other Kafka ports"
            )


def _spawn(config: StackConfig, node: BrokerNode, java: str) -> int:
    command = [
        java,
        f"-Xmx{config.kafka_heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-cp",
        classpath(config),
        f"-Dlog4j2.configurationFile={_log4j_properties(node)}",
        _MAIN_CLASS,
        str(_server_properties(node)),
    ]
    with _stdout_log(node).open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=node.directory,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def stop(node: BrokerNode, log: Log, *, hard: bool = False) -> bool:
    """Stop the node if this stack started it (SIGTERM — a controlled shutdown that hands its
    partitions' leadership over —, then SIGKILL after a grace period; ``hard``: SIGKILL at once,
    a crash).

    Returns whether there was one to stop; a broker we did not start is never touched.
    """
    pid = node_pid(node)
    if pid is None:
        _pid_file(node).unlink(missing_ok=True)
        return False
    started = time.monotonic()
    terminate(pid, 0.0 if hard else STOP_GRACE_SECONDS)
    _pid_file(node).unlink(missing_ok=True)
    # Gone means its ports are free too: the next start must not mistake them for a stranger's.
    poll_until(lambda: not _any_port_open(node), PORTS_CLOSE_SECONDS)
    how = "killed" if hard else "stopped"
    log(f"kafka node {node.node_id} {how} (pid {pid}, {time.monotonic() - started:.1f} s)")
    return True


def _any_port_open(node: BrokerNode) -> bool:
    return any(port_is_open(node.host, port) for port in (node.port, node.controller_port))
