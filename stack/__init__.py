"""Local stack: real Kafka (one broker, or a cluster of three; Maven Central jars, ``java -cp``)
and PostgreSQL on loopback, and on request a Confluent-compatible Schema Registry (Apicurio,
built from Maven Central).

Used by ``bulk-ingest stack up|down|status``, the run command and the test fixtures. ``up`` is
idempotent and fast when everything already runs; ``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from stack import kafka, kafka_cluster, postgres, registry
from stack.config import BrokerNode, ServiceStatus, StackConfig, StackError, StackStatus
from stack.process import exclusive_lock

__all__ = [
    "BrokerNode",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
    "kafka_died_unexpectedly",
    "kafka_node_pid",
    "kafka_pid",
    "registry_url",
    "restart_kafka",
    "restart_postgres",
    "stack_down",
    "stack_status",
    "stack_up",
    "start_kafka",
    "start_kafka_node",
    "stop_kafka",
    "stop_kafka_node",
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
    """Bring Kafka (``config.kafka_brokers`` nodes) and PostgreSQL up (or find them up) and wait
    until both are ready; with ``with_registry`` the schema registry too (built the first time).

    The brokers' JVMs boot while PostgreSQL is being prepared, which saves a few seconds.
    """
    with _one_at_a_time(config):
        launched = kafka_cluster.launch(config, log)
        postgres_status = postgres.start(config, log)
        kafka_cluster.wait_ready(config, launched, log)
        registry_status = registry.start(config, log) if with_registry else None
    return StackStatus(
        kafka_nodes=kafka_cluster.status(config), postgres=postgres_status, registry=registry_status
    )


def registry_url(config: StackConfig) -> str:
    """The Confluent API of the stack's registry (``BULK_INGEST_SCHEMA_REGISTRY_URL``)."""
    return registry.registry_url(config)


def stack_down(config: StackConfig, *, log: Log = print) -> None:
    """Stop the brokers and the registry this stack started (of any broker count), and
    PostgreSQL only if this stack started it."""
    with _one_at_a_time(config):
        registry.stop(config, log)
        if not kafka_cluster.stop(config, log):
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
        kafka_nodes=kafka_cluster.status(config),
        postgres=postgres.status(config),
        registry=running if running.running else None,
    )


def restart_kafka(config: StackConfig, *, hard: bool = False, log: Log = _silent) -> None:
    """Stop every broker (SIGTERM and wait; ``hard``: SIGKILL) and start them again; returns
    once they answer metadata."""
    with _one_at_a_time(config):
        kafka_cluster.stop(config, log, hard=hard)
        kafka_cluster.start(config, log)


def stop_kafka(config: StackConfig, *, hard: bool = False, log: Log = _silent) -> None:
    """Stop every broker this stack started (``hard``: SIGKILL, a crash)."""
    with _one_at_a_time(config):
        kafka_cluster.stop(config, log, hard=hard)


def start_kafka(config: StackConfig, *, log: Log = _silent) -> None:
    """Start the brokers again; returns once they answer metadata."""
    with _one_at_a_time(config):
        kafka_cluster.start(config, log)


def stop_kafka_node(
    config: StackConfig, node_id: int, *, hard: bool = False, log: Log = _silent
) -> None:
    """Stop one node of the cluster (SIGTERM, a controlled shutdown that moves its leadership
    first; ``hard``: SIGKILL, a crash that the controller notices by missed heartbeats)."""
    with _one_at_a_time(config):
        kafka.stop(kafka_cluster.node(config, node_id), log, hard=hard)


def start_kafka_node(config: StackConfig, node_id: int, *, log: Log = _silent) -> None:
    """Start one node again; returns once it is registered and every partition is fully
    replicated again."""
    with _one_at_a_time(config):
        kafka_cluster.start(config, log, [kafka_cluster.node(config, node_id)])


def kafka_node_pid(config: StackConfig, node_id: int) -> int | None:
    """The pid of one node this stack started, or None if it is not running."""
    return kafka.node_pid(kafka_cluster.node(config, node_id))


def restart_postgres(config: StackConfig, *, mode: str = "fast", log: Log = _silent) -> None:
    """``pg_ctlcluster restart`` the cluster (shutdown ``mode`` fast or immediate) and return
    once it accepts logins again."""
    with _one_at_a_time(config):
        postgres.restart(config, log, mode=mode)


def kafka_died_unexpectedly(config: StackConfig) -> str | None:
    """How a broker this stack started died without being stopped (with its log tail), or
    None while they run or after a deliberate stop."""
    return kafka_cluster.unexpected_death(config)


def kafka_pid(config: StackConfig) -> int | None:
    """The pid of the (first) broker this stack started for ``config``, or None."""
    return kafka.node_pid(config.kafka_nodes[0])
