"""A real single-node KRaft Kafka broker run from Maven Central jars with ``java -cp``.

Layout: jars in ``cache_dir/kafka-<version>/libs`` (downloaded once by Maven, shared between
checkouts); ``server.properties``, ``log4j2.properties``, ``kafka.pid``, ``data/`` and ``logs/``
under ``state_dir/kafka``. The broker runs detached in its own session so it outlives the
command that started it; it is ours only if its pid file names a live ``kafka.Kafka`` java
process whose command line carries our ``server.properties``.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stack.config import ServiceStatus, StackConfig, StackError
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

READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 30.0
PORTS_CLOSE_SECONDS = 15.0
DOWNLOAD_TIMEOUT_SECONDS = 900.0
_MAIN_CLASS = "kafka.Kafka"
_PACKAGE_DIR = Path(__file__).resolve().parent
_JAVA_HINT = "install a Java 17+ runtime, e.g. `apt-get install -y openjdk-17-jre-headless`"
_MVN_HINT = "install Maven, e.g. `apt-get install -y maven`"

Log = Callable[[str], None]


@dataclass(frozen=True)
class KafkaLaunch:
    """A broker that ``launch`` found running or just started, not yet known to be ready."""

    pid: int
    started_now: bool
    started_at: float


# --- paths -------------------------------------------------------------------------------------


def _server_properties(config: StackConfig) -> Path:
    return config.kafka_dir / "server.properties"


def _log4j_properties(config: StackConfig) -> Path:
    return config.kafka_dir / "log4j2.properties"


def _pid_file(config: StackConfig) -> Path:
    return config.kafka_dir / "kafka.pid"


def _data_dir(config: StackConfig) -> Path:
    return config.kafka_dir / "data"


def _server_log(config: StackConfig) -> Path:
    return config.kafka_dir / "logs" / "server.log"


def _stdout_log(config: StackConfig) -> Path:
    return config.kafka_dir / "logs" / "stdout.log"


def _classpath(config: StackConfig) -> str:
    return f"{config.kafka_libs_dir}/*"


# --- ownership and status ----------------------------------------------------------------------


def kafka_pid(config: StackConfig) -> int | None:
    """The pid of the broker this stack started for ``config``, if it is alive."""
    pid = read_pid_file(_pid_file(config))
    if pid is None or not is_alive(pid) or not _is_our_broker(config, pid):
        return None
    return pid


def unexpected_death(config: StackConfig) -> str | None:
    """How the broker this stack started died, if it did without being stopped; else None.

    ``stop`` removes the pid file, so a pid file naming a process that is gone means the broker
    died on its own (a crash, the kernel's OOM killer). When the broker is our child its exit
    status is read here, before anything else reaps it.
    """
    pid = read_pid_file(_pid_file(config))
    if pid is None:
        return None
    how = _reaped_exit_status(pid)
    if how is None and is_alive(pid):
        return None
    return (
        f"kafka broker (pid {pid}) {how or 'exited'} without being stopped. "
        f"Last lines of {_server_log(config)}:\n{tail_file(_server_log(config), 25)}\n"
        f"Last lines of {_stdout_log(config)}:\n{tail_file(_stdout_log(config), 10)}"
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


def _is_our_broker(config: StackConfig, pid: int) -> bool:
    args = command_line(pid)
    return _MAIN_CLASS in args and str(_server_properties(config)) in args


def status(config: StackConfig) -> ServiceStatus:
    pid = kafka_pid(config)
    if pid is not None:
        answering = port_is_open(config.kafka_host, config.kafka_port)
        detail = f"kafka {config.kafka_version}, state in {config.kafka_dir}"
        if not answering:
            detail += "; process alive but port not open yet"
        return _status(config, running=True, pid=pid, detail=detail, ours=True)
    if port_is_open(config.kafka_host, config.kafka_port):
        foreign = listening_pid(config.kafka_port)
        owner = describe_process(foreign) if foreign else "an unknown process"
        return _status(
            config,
            running=True,
            pid=foreign,
            detail=f"port served by {owner}, not started by this stack",
            ours=False,
        )
    return _status(config, running=False, pid=None, detail="not running", ours=False)


def _status(
    config: StackConfig, *, running: bool, pid: int | None, detail: str, ours: bool
) -> ServiceStatus:
    return ServiceStatus(
        name="kafka",
        running=running,
        pid=pid,
        address=config.kafka_bootstrap,
        detail=detail,
        started_by_stack=ours,
    )


# --- jars --------------------------------------------------------------------------------------


def ensure_jars(config: StackConfig, log: Log) -> Path:
    """The libs directory for ``config.kafka_version``, downloading it with Maven the first time.

    Maven fills a private temporary directory that is renamed into place, so a half-finished
    download is never mistaken for a complete one and two concurrent first runs do not clash.
    """
    libs = config.kafka_libs_dir
    if _jars_complete(config, libs):
        return libs
    mvn = require_executable("mvn", _MVN_HINT)
    log(f"downloading Kafka {config.kafka_version} jars with Maven into {libs} (once)")
    version_dir = libs.parent
    version_dir.mkdir(parents=True, exist_ok=True)
    pom = version_dir / "pom.xml"
    shutil.copyfile(_PACKAGE_DIR / "pom.xml", pom)
    staging = version_dir / f"libs.partial-{uuid.uuid4().hex[:8]}"
    try:
        _copy_dependencies(mvn, pom, staging, config.kafka_version)
        _move_into_place(staging, libs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _jars_complete(config, libs):
        raise StackError(f"Maven finished but {libs} has no kafka_2.13 jar; delete it and retry")
    return libs


def _jars_complete(config: StackConfig, libs: Path) -> bool:
    return (libs / f"kafka_2.13-{config.kafka_version}.jar").is_file()


def _copy_dependencies(mvn: str, pom: Path, output: Path, version: str) -> None:
    run_command(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={output}",
            "-DincludeScope=runtime",
        ],
        action=f"downloading Kafka {version} from Maven Central",
        hint=(
            "check the network and that this Kafka version exists on Maven Central "
            "(https://repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/)"
        ),
        timeout=DOWNLOAD_TIMEOUT_SECONDS,
    )


def _move_into_place(staging: Path, libs: Path) -> None:
    try:
        staging.rename(libs)
    except OSError:
        if not libs.is_dir():  # someone else won the race if libs now exists; otherwise re-raise
            raise


# --- configuration and storage -----------------------------------------------------------------


def render_config_files(config: StackConfig) -> tuple[str, str]:
    """The text of ``server.properties`` and ``log4j2.properties`` for ``config``."""
    server = _render(
        "kafka-server.properties",
        host=config.kafka_host,
        port=str(config.kafka_port),
        controller_port=str(config.kafka_controller_port),
        data_dir=str(_data_dir(config)),
    )
    logging = _render("kafka-log4j2.properties", log_file=str(_server_log(config)))
    return server, logging


def _render(template_name: str, **values: str) -> str:
    return Template((_PACKAGE_DIR / template_name).read_text()).substitute(values)


def _write_config_files(config: StackConfig) -> None:
    server, logging = render_config_files(config)
    for directory in (config.kafka_dir, _data_dir(config), _server_log(config).parent):
        directory.mkdir(parents=True, exist_ok=True)
    _server_properties(config).write_text(server)
    _log4j_properties(config).write_text(logging)


def _check_running_config_matches(config: StackConfig) -> None:
    server, _ = render_config_files(config)
    on_disk = _server_properties(config).read_text()
    if on_disk != server:
        raise StackError(
            f"the running broker in {config.kafka_dir} uses other settings than requested "
            "(ports or paths changed); run `bulk-ingest stack down` and `up` again"
        )


def _ensure_formatted(config: StackConfig, java: str) -> None:
    if (_data_dir(config) / "meta.properties").is_file():
        return
    run_command(
        [
            java,
            "-Xmx256m",
            "-cp",
            _classpath(config),
            f"-Dlog4j2.configurationFile={_log4j_properties(config)}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _new_cluster_id(),
            "-c",
            str(_server_properties(config)),
        ],
        action="formatting Kafka storage",
        hint=f"see {_server_log(config)}; deleting {_data_dir(config)} starts from scratch",
    )


def _new_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints (URL-safe base64 of a v4 UUID), without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like command-line flags
            return text


# --- start, readiness, stop --------------------------------------------------------------------


def launch(config: StackConfig, log: Log) -> KafkaLaunch:
    """Start the broker detached unless ours already runs; does not wait for readiness."""
    pid = kafka_pid(config)
    if pid is not None:
        _check_running_config_matches(config)
        return KafkaLaunch(pid=pid, started_now=False, started_at=time.monotonic())
    adopted = _adopt_unrecorded_broker(config)
    if adopted is not None:
        return KafkaLaunch(pid=adopted, started_now=False, started_at=time.monotonic())
    _refuse_foreign_listeners(config)
    java = require_executable("java", _JAVA_HINT)
    started_at = time.monotonic()
    ensure_jars(config, log)
    _write_config_files(config)
    _ensure_formatted(config, java)
    pid = _spawn_broker(config, java)
    write_pid_file(_pid_file(config), pid)
    return KafkaLaunch(pid=pid, started_now=True, started_at=started_at)


def _adopt_unrecorded_broker(config: StackConfig) -> int | None:
    """Our own broker listening without a valid pid file (the file was lost or overwritten)."""
    pid = listening_pid(config.kafka_port)
    if pid is None or not _is_our_broker(config, pid):
        return None
    write_pid_file(_pid_file(config), pid)
    return pid


def _refuse_foreign_listeners(config: StackConfig) -> None:
    for port in (config.kafka_port, config.kafka_controller_port):
        if port_is_open(config.kafka_host, port):
            foreign = listening_pid(port)
            owner = describe_process(foreign) if foreign else "a process we cannot see"
            raise StackError(
                f"{config.kafka_host}:{port} is already served by {owner}, which this stack "
                f"did not start (state in {config.kafka_dir}); stop that process or configure "
                "other Kafka ports"
            )


def _spawn_broker(config: StackConfig, java: str) -> int:
    command = [
        java,
        f"-Xmx{config.kafka_heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-cp",
        _classpath(config),
        f"-Dlog4j2.configurationFile={_log4j_properties(config)}",
        _MAIN_CLASS,
        str(_server_properties(config)),
    ]
    with _stdout_log(config).open("ab") as output:
        broker = subprocess.Popen(
            command,
            cwd=config.kafka_dir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return broker.pid


def wait_ready(config: StackConfig, launched: KafkaLaunch, log: Log) -> ServiceStatus:
    """Block until the broker answers an admin metadata request; fail with its log tail if it
    dies or does not answer within READY_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    if not _wait_for_port(config, launched.pid, deadline):
        _raise_not_ready(config, launched.pid)
    if not _wait_for_metadata(config, launched.pid, deadline):
        _raise_not_ready(config, launched.pid)
    elapsed = time.monotonic() - launched.started_at
    verb = "ready" if launched.started_now else "already running"
    log(
        f"kafka {config.kafka_version} {verb} on {config.kafka_bootstrap} "
        f"(pid {launched.pid}, {elapsed:.1f} s)"
    )
    return status(config)


def _wait_for_port(config: StackConfig, pid: int, deadline: float) -> bool:
    def open_or_dead() -> bool:
        return not is_alive(pid) or port_is_open(config.kafka_host, config.kafka_port)

    return poll_until(open_or_dead, deadline - time.monotonic()) and is_alive(pid)


def _wait_for_metadata(config: StackConfig, pid: int, deadline: float) -> bool:
    admin = AdminClient(
        {
            "bootstrap.servers": config.kafka_bootstrap,
            "reconnect.backoff.max.ms": 500,
            "log_level": 0,  # connection errors while the broker starts are expected here
        }
    )

    def answers_or_dead() -> bool:
        return not is_alive(pid) or _metadata_answers(admin)

    return poll_until(answers_or_dead, deadline - time.monotonic()) and is_alive(pid)


def _metadata_answers(admin: AdminClient) -> bool:
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except KafkaException:
        return False


def _raise_not_ready(config: StackConfig, pid: int) -> None:
    what = "exited" if not is_alive(pid) else f"did not answer within {READY_TIMEOUT_SECONDS:.0f} s"
    raise StackError(
        f"kafka broker (pid {pid}) {what}. Last lines of {_server_log(config)}:\n"
        f"{tail_file(_server_log(config), 25)}\n"
        f"Last lines of {_stdout_log(config)}:\n{tail_file(_stdout_log(config), 10)}\n"
        "Fix the cause above and run `bulk-ingest stack up` again "
        "(`bulk-ingest stack down` first if the process is still alive)."
    )


def start(config: StackConfig, log: Log) -> ServiceStatus:
    """Start the broker if needed and wait until it is ready."""
    return wait_ready(config, launch(config, log), log)


def stop(config: StackConfig, log: Log, *, hard: bool = False) -> bool:
    """Stop the broker this stack started (SIGTERM, then SIGKILL after a grace period; ``hard``:
    SIGKILL at once, a crash).

    Returns whether there was one to stop; a broker we did not start is never touched.
    """
    pid = kafka_pid(config)
    if pid is None:
        _pid_file(config).unlink(missing_ok=True)
        return False
    started = time.monotonic()
    terminate(pid, 0.0 if hard else STOP_GRACE_SECONDS)
    _pid_file(config).unlink(missing_ok=True)
    # Gone means its ports are free too: the next start must not mistake them for a stranger's.
    poll_until(lambda: not _any_port_open(config), PORTS_CLOSE_SECONDS)
    log(f"kafka stopped (pid {pid}, {time.monotonic() - started:.1f} s)")
    return True


def _any_port_open(config: StackConfig) -> bool:
    ports = (config.kafka_port, config.kafka_controller_port)
    return any(port_is_open(config.kafka_host, port) for port in ports)


def restart(config: StackConfig, log: Log, *, hard: bool = False) -> ServiceStatus:
    stop(config, log, hard=hard)
    return start(config, log)
