"""A real Confluent-compatible Schema Registry: Apicurio Registry, built from Maven Central.

Apicurio Registry 2.4.2.Final (in-memory storage) serves the Confluent API at
``/apis/ccompat/v7``. No runnable jar of it is published on Maven Central, so the first
``stack up --registry`` builds one with Maven (``registry-pom.xml``: the app artifact re-packaged
as a Quarkus uber-jar; ``registry-maven-settings.xml`` sends every repository its parent POM
names to Central) into ``cache_dir/apicurio-registry-<version>/registry.jar``, shared between
checkouts — about two minutes and 210 MB of Maven repository the first time, nothing after.
The registry runs detached on loopback, its pid file and log under ``state_dir/registry``; it
is ours only if that pid is a live java process running our jar on our port. Its storage is in
memory: a restart forgets the schemas, and every process of the service registers them again
when it starts.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

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

READY_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 15.0
BUILD_TIMEOUT_SECONDS = 1200.0
CONFLUENT_API = "/apis/ccompat/v7"
_PACKAGE_DIR = Path(__file__).resolve().parent
_BUILT_JAR = "apicurio-registry-mem-2.4.2-runner.jar"
_JAVA_HINT = "install a Java 17+ runtime, e.g. `apt-get install -y openjdk-17-jre-headless`"
_MVN_HINT = "install Maven, e.g. `apt-get install -y maven`"

Log = Callable[[str], None]


def registry_url(config: StackConfig) -> str:
    """The base URL a Confluent client is given (``BULK_INGEST_SCHEMA_REGISTRY_URL``)."""
    return f"http://{config.registry_host}:{config.registry_port}{CONFLUENT_API}"


def _jar(config: StackConfig) -> Path:
    return config.registry_build_dir / "registry.jar"


def _dir(config: StackConfig) -> Path:
    return config.state_dir / "registry"


def _pid_file(config: StackConfig) -> Path:
    return _dir(config) / "registry.pid"


def _log(config: StackConfig) -> Path:
    return _dir(config) / "registry.log"


# --- the jar -----------------------------------------------------------------------------------


def ensure_jar(config: StackConfig, log: Log) -> Path:
    """The runnable registry jar, built with Maven the first time (in a private folder renamed
    into place, so a half-finished build is never taken for a finished one)."""
    jar = _jar(config)
    if jar.is_file():
        return jar
    mvn = require_executable("mvn", _MVN_HINT)
    log(f"building Apicurio Registry {config.registry_version} with Maven into {jar} (once)")
    build_root = config.registry_build_dir.parent
    build_root.mkdir(parents=True, exist_ok=True)
    staging = build_root / f"registry-build-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        shutil.copyfile(_PACKAGE_DIR / "registry-pom.xml", staging / "pom.xml")
        settings = staging / "settings.xml"
        shutil.copyfile(_PACKAGE_DIR / "registry-maven-settings.xml", settings)
        run_command(
            [mvn, "-q", "-B", "-s", str(settings), "-f", str(staging / "pom.xml"), "package"],
            action=f"building Apicurio Registry {config.registry_version} from Maven Central",
            hint="check the network (Maven Central) and the Maven output above",
            timeout=BUILD_TIMEOUT_SECONDS,
        )
        built = staging / "target" / _BUILT_JAR
        if not built.is_file():
            raise StackError(f"Maven finished but built no {built}")
        config.registry_build_dir.mkdir(parents=True, exist_ok=True)
        partial = jar.with_suffix(f".partial-{uuid.uuid4().hex[:8]}")
        shutil.copyfile(built, partial)
        partial.rename(jar)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return jar


# --- start, readiness, stop --------------------------------------------------------------------


def registry_pid(config: StackConfig) -> int | None:
    pid = read_pid_file(_pid_file(config))
    if pid is None or not is_alive(pid) or not _is_ours(config, pid):
        return None
    return pid


def _is_ours(config: StackConfig, pid: int) -> bool:
    line = command_line(pid)
    return str(_jar(config)) in line and f"-Dquarkus.http.port={config.registry_port}" in line


def status(config: StackConfig) -> ServiceStatus:
    pid = registry_pid(config)
    address = f"{config.registry_host}:{config.registry_port}"
    detail = registry_url(config) if pid else "not running"
    return ServiceStatus("registry", pid is not None, pid, address, detail, pid is not None)


def start(config: StackConfig, log: Log) -> ServiceStatus:
    """Start the registry unless ours runs, and wait until its Confluent API answers."""
    pid = registry_pid(config)
    started_at = time.monotonic()
    if pid is None:
        if port_is_open(config.registry_host, config.registry_port):
            foreign = listening_pid(config.registry_port)
            owner = describe_process(foreign) if foreign else "a process we cannot see"
            raise StackError(
                f"{config.registry_host}:{config.registry_port} is already served by {owner}, "
                "which this stack did not start; stop it or set BULK_INGEST_SCHEMA_REGISTRY_PORT"
            )
        java = require_executable("java", _JAVA_HINT)
        jar = ensure_jar(config, log)
        pid = _spawn(config, java, jar)
        write_pid_file(_pid_file(config), pid)
    if not poll_until(lambda: not is_alive(pid) or _answers(config), READY_TIMEOUT_SECONDS):
        _raise_not_ready(config, pid, "did not answer")
    if not is_alive(pid):
        _raise_not_ready(config, pid, "exited")
    log(
        f"schema registry ready at {registry_url(config)} (pid {pid}, "
        f"{time.monotonic() - started_at:.1f} s)"
    )
    return status(config)


def _spawn(config: StackConfig, java: str, jar: Path) -> int:
    _dir(config).mkdir(parents=True, exist_ok=True)
    command = [
        java,
        "-Xmx128m",
        "-XX:+UseSerialGC",
        f"-Dquarkus.http.host={config.registry_host}",
        f"-Dquarkus.http.port={config.registry_port}",
        "-jar",
        str(jar),
    ]
    with _log(config).open("ab") as output:
        registry = subprocess.Popen(
            command,
            cwd=_dir(config),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return registry.pid


def _answers(config: StackConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{registry_url(config)}/subjects", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _raise_not_ready(config: StackConfig, pid: int, what: str) -> None:
    raise StackError(
        f"the schema registry (pid {pid}) {what} within {READY_TIMEOUT_SECONDS:.0f} s. "
        f"Last lines of {_log(config)}:\n{tail_file(_log(config), 25)}"
    )


def stop(config: StackConfig, log: Log, *, hard: bool = False) -> bool:
    """Stop the registry this stack started; whether there was one."""
    pid = registry_pid(config)
    if pid is None:
        _pid_file(config).unlink(missing_ok=True)
        return False
    terminate(pid, 0.0 if hard else STOP_GRACE_SECONDS)
    _pid_file(config).unlink(missing_ok=True)
    log(f"schema registry stopped (pid {pid})")
    return True
