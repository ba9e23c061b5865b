"""The local stack's frozen configuration, its status records and its one error type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class StackError(Exception):
    """Bringing the local stack up or down failed; the message says what failed and what to do."""


@dataclass(frozen=True)
class BrokerNode:
    """One Kafka node of the stack: a combined broker and KRaft controller."""

    node_id: int
    host: str
    port: int
    controller_port: int
    directory: Path
    """Its ``server.properties``, ``kafka.pid``, ``data/`` and ``logs/``."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_address(self) -> str:
        return f"{self.host}:{self.controller_port}"


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which versions and addresses it uses.

    ``state_dir`` is git-ignored and per checkout (Kafka data, logs and pid file live under
    ``state_dir/"kafka"``, the PostgreSQL marker under ``state_dir/"postgres"``). ``cache_dir`` is
    shared between checkouts: the Kafka jars are downloaded there once per version.
    """

    state_dir: Path
    cache_dir: Path
    kafka_version: str = "4.3.0"
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_brokers: int = 1
    """One broker (``state_dir/kafka``) or a cluster of combined broker+controller nodes
    (``state_dir/kafka-cluster/node-N``), node N on ``kafka_port + 2(N-1)`` and
    ``kafka_controller_port + 2(N-1)``."""
    kafka_heap: str = "512m"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "bulk_ingest"
    pg_password: str = "bulk_ingest"
    pg_database: str = "bulk_ingest"
    registry_version: str = "2.4.2.Final"
    registry_host: str = "127.0.0.1"
    registry_port: int = 8081

    @property
    def kafka_bootstrap(self) -> str:
        """Every node's address, comma-separated: what clients of this stack bootstrap from."""
        return ",".join(node.address for node in self.kafka_nodes)

    @property
    def kafka_dir(self) -> Path:
        """The single broker's folder (``kafka_brokers == 1``)."""
        return self.state_dir / "kafka"

    @property
    def kafka_cluster_dir(self) -> Path:
        """The cluster's folder (``kafka_brokers > 1``): its id and one folder per node."""
        return self.state_dir / "kafka-cluster"

    @property
    def kafka_nodes(self) -> tuple[BrokerNode, ...]:
        if self.kafka_brokers == 1:
            return (
                BrokerNode(
                    1, self.kafka_host, self.kafka_port, self.kafka_controller_port, self.kafka_dir
                ),
            )
        return tuple(
            BrokerNode(
                node_id=n,
                host=self.kafka_host,
                port=self.kafka_port + 2 * (n - 1),
                controller_port=self.kafka_controller_port + 2 * (n - 1),
                directory=self.kafka_cluster_dir / f"node-{n}",
            )
            for n in range(1, self.kafka_brokers + 1)
        )

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{self.kafka_version}" / "libs"

    @property
    def registry_build_dir(self) -> Path:
        return self.cache_dir / f"apicurio-registry-{self.registry_version}"

    @property
    def pg_address(self) -> str:
        return f"{self.pg_host}:{self.pg_port}"


@dataclass(frozen=True)
class ServiceStatus:
    """One service as seen right now; ``started_by_stack`` means ``stack_down`` will stop it."""

    name: str
    running: bool
    pid: int | None
    address: str
    detail: str
    started_by_stack: bool


@dataclass(frozen=True)
class StackStatus:
    kafka_nodes: tuple[ServiceStatus, ...]
    """One per Kafka node (one alone, three in a cluster)."""
    postgres: ServiceStatus
    registry: ServiceStatus | None = None
    """Only when asked for (``stack up --registry``) or running."""

    @property
    def kafka(self) -> ServiceStatus:
        """The first (or only) Kafka node."""
        return self.kafka_nodes[0]

    @property
    def all_running(self) -> bool:
        registry_running = self.registry is None or self.registry.running
        kafka_running = all(node.running for node in self.kafka_nodes)
        return kafka_running and self.postgres.running and registry_running
