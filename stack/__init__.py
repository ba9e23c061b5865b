"""Local stack: a real Kafka broker (Maven Central jars, ``java -cp``) and PostgreSQL on loopback,
and on request a Confluent-compatible Schema Registry (Apicurio, built from Maven Central).

Used by ``bulk-ingest stack up|down|status``, the run command and the test fixtures. ``up`` is
idempotent and fast when everything already runs; ``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from stack import kafka, postgres, registry
from stack.config import ServiceStatus, StackConfig, StackError, StackStatus
from stack.process import exclusive_lock

__all__ = [
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
    "kafka_died_unexpectedly",
    "kafka_pid",
    "registry_url",
    "restart_kafka",
    "restart_postgres",
    "stack_down",
    "stack_status",
    "stack_up",
    "start_kafka",
    "stop_kafka",
]

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


@contextlib.contextmanager
def _one_at_a_time(config: StackConfig) -> Iterator[None]:
    """Serialise up/down/restart on one state folder (parallel test workers, CLI and tests)."""
    with exclusive_lock(config.state_dir / "stack.lock"):
        yield


def stack_up(config: StackConfig, *, with_registry: bool = False, log: Log = print) -> StackStatus:
    """Bring Kafka and PostgreSQL up (or find them up) and wait until both are ready; with
    ``with_registry`` the schema registry too (built the first time).

    The broker's JVM boots while PostgreSQL is being prepared, which saves a few seconds.
    """
    with _one_at_a_time(config):
        launched = kafka.launch(config, log)
        postgres_status = postgres.start(config, log)
        kafka_status = kafka.wait_ready(config, launched, log)
        registry_status = registry.start(config, log) if with_registry else None
    return StackStatus(kafka=kafka_status, postgres=postgres_status, registry=registry_status)


def registry_url(config: StackConfig) -> str:
    """The Confluent API of the stack's registry (``BULK_INGEST_SCHEMA_REGISTRY_URL``)."""
    return registry.registry_url(config)


def stack_down(config: StackConfig, *, log: Log = print) -> None:
    """Stop the broker and the registry this stack started, and PostgreSQL only if this stack
    started it."""
    with _one_at_a_time(config):
        registry.stop(config, log)
        if not kafka.stop(config, log):
            log("kafka: not running (nothing started by this stack)")
        if not postgres.stop(config, log):
            log(_postgres_left_alone(config))


def _postgres_left_alone(config: StackConfig) -> str:
    if postgres.status(config).running:
        return "postgresql: left running (not started by this stack)"
    return "postgresql: not running"


def stack_status(config: StackConfig) -> StackStatus:
    """What runs right now; starts, installs and downloads nothing."""
    running = registry.status(config)
    return StackStatus(
        kafka=kafka.status(config),
        postgres=postgres.status(config),
        registry=running if running.running else None,
    )


def restart_kafka(config: StackConfig, *, hard: bool = False, log: Log = _silent) -> None:
    """Stop the broker (SIGTERM and wait; ``hard``: SIGKILL) and start it again; returns once it
    answers metadata."""
    with _one_at_a_time(config):
        kafka.restart(config, log, hard=hard)


def stop_kafka(config: StackConfig, *, hard: bool = False, log: Log = _silent) -> None:
    """Stop the broker this stack started (``hard``: SIGKILL, a crash)."""
    with _one_at_a_time(config):
        kafka.stop(config, log, hard=hard)


def start_kafka(config: StackConfig, *, log: Log = _silent) -> None:
    """Start the broker again; returns once it answers metadata."""
    with _one_at_a_time(config):
        kafka.start(config, log)


def restart_postgres(config: StackConfig, *, mode: str = "fast", log: Log = _silent) -> None:
    """``pg_ctlcluster restart`` the cluster (shutdown ``mode`` fast or immediate) and return
    once it accepts logins again."""
    with _one_at_a_time(config):
        postgres.restart(config, log, mode=mode)


def kafka_died_unexpectedly(config: StackConfig) -> str | None:
    """How the broker this stack started died without being stopped (with its log tail), or
    None while it runs or after a deliberate stop."""
    return kafka.unexpected_death(config)


def kafka_pid(config: StackConfig) -> int | None:
    """The pid of the broker this stack started for ``config``, or None if it is not running."""
    return kafka.kafka_pid(config)
