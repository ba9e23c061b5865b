"""The local stack's frozen configuration, its status records and its one error type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class StackError(Exception):
    """Bringing the local stack up or down failed; the message says what failed and what to do."""


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
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

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
    kafka: ServiceStatus
    postgres: ServiceStatus
    registry: ServiceStatus | None = None
    """Only when asked for (``stack up --registry``) or running."""

    @property
    def all_running(self) -> bool:
        registry_running = self.registry is None or self.registry.running
        return self.kafka.running and self.postgres.running and registry_running
