"""Typed, frozen settings read once from ``BULK_INGEST_*`` environment variables.

Every process builds one :class:`Settings` at start-up with :func:`load_settings` and passes the
pieces it needs down through constructors. Nothing reads the environment deeper in the code.
Each field's environment variable is ``BULK_INGEST_`` + the field name upper-cased; the README
lists them all.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from bulk_ingest.replication import Replication, replication_for
from domain.codec import Framing

PREFIX = "BULK_INGEST_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A ``BULK_INGEST_*`` variable has a value that cannot be used."""


@dataclass(frozen=True)
class TopicNames:
    """The topics' names, as :attr:`Settings.topics` gives them (the ``topic_*`` settings)."""

    requests: str
    records: str
    outcomes: str
    jobs: str
    dlq: str
    progress: str
    imports: str

    def all(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


@dataclass(frozen=True)
class Settings:
    # --- gateway ---
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    max_body_bytes: int = 64 * 1024 * 1024
    max_async_records: int = 50_000
    max_sync_records: int = 1_000
    sync_timeout_seconds: float = 30.0
    publish_chunk_records: int = 1_000
    # --- kafka ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Bootstrap servers, comma-separated (``host:port,host:port``); every client takes the list."""
    kafka_brokers: int = 1
    """Brokers in the cluster: ``stack up`` starts this many, and the replication factor and
    ``min.insync.replicas`` of every topic derive from it (1 → 1/1, 2 → 2/1, 3+ → 3/2)."""
    kafka_controller_port: int = 9093
    kafka_version: str = "4.3.0"
    kafka_delivery_timeout_seconds: float = 30.0
    topic_requests: str = "bulk.requests"
    topic_records: str = "bulk.records"
    topic_outcomes: str = "bulk.outcomes"
    topic_jobs: str = "bulk.jobs"
    topic_dlq: str = "bulk.dlq"
    topic_progress: str = "bulk.progress"
    topic_imports: str = "bulk.imports"
    partitions: int = 4
    schema_registry_url: str = ""
    """A Confluent-compatible Schema Registry (unset: none; single-object encoding only)."""
    event_framing: str = "single-object"
    """How outcome and job events are framed: ``single-object`` or ``confluent`` (needs the
    registry)."""
    schema_registry_port: int = 8081
    """Where ``bulk-ingest stack up --registry`` starts the local registry (loopback)."""
    # --- postgres ---
    database_url: str = "postgresql+psycopg://bulk_ingest:bulk_ingest@127.0.0.1:5432/bulk_ingest"
    # --- workers ---
    app_id: str = "bulk-ingest"
    worker_id: str = "worker"
    persist_batch_records: int = 2_000
    persist_batch_seconds: float = 0.05
    commit_interval_seconds: float = 0.5
    stall_seconds: float = 15.0
    stall_check_seconds: float = 5.0
    poison_attempts: int = 3
    incomplete_job_seconds: float = 600.0
    incomplete_job_check_seconds: float = 30.0
    max_job_records: int = 1_000_000
    revert_retention_seconds: float = 30 * 24 * 3600.0
    """How long a job's before-images are kept (it can be reverted); then ``RevertExpired``."""
    fault_injection_key: str = ""
    metrics_port: int = 9400
    """Prometheus metrics: the consumers listen here, worker N on this + N; 0 turns them off."""
    # --- completion side ---
    report_dir: Path = field(default_factory=lambda: REPO_ROOT / ".state" / "reports")
    file_dir: Path = field(default_factory=lambda: REPO_ROOT / ".state" / "files")
    webhook_timeout_seconds: float = 10.0
    webhook_retry_horizon_seconds: float = 3 * 24 * 3600.0
    webhook_initial_backoff_seconds: float = 5.0
    webhook_max_backoff_seconds: float = 3600.0
    webhook_allow_loopback: bool = False
    webhook_allowed_networks: tuple[str, ...] = ()
    webhook_allowed_hosts: tuple[str, ...] = ()
    webhook_poll_seconds: float = 1.0
    webhook_max_in_flight: int = 16
    webhook_sweep_seconds: float = 60.0
    # --- local stack ---
    state_dir: Path = field(default_factory=lambda: REPO_ROOT / ".state")
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "bulk-ingest")
    # --- file imports ---
    max_file_bytes: int = 1024 * 1024 * 1024
    file_temporary_ttl_seconds: float = 3600.0
    file_cleanup_interval_seconds: float = 60.0
    zip_max_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024
    zip_max_ratio: float = 200.0
    import_chunk_rows: int = 1_000
    import_max_rows_ahead: int = 20_000

    @property
    def topics(self) -> TopicNames:
        return TopicNames(
            requests=self.topic_requests,
            records=self.topic_records,
            outcomes=self.topic_outcomes,
            jobs=self.topic_jobs,
            dlq=self.topic_dlq,
            progress=self.topic_progress,
            imports=self.topic_imports,
        )

    @property
    def replication(self) -> Replication:
        return replication_for(self.kafka_brokers)

    @property
    def bootstrap_servers(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.kafka_bootstrap.split(",") if part.strip())

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url

    @property
    def libpq_url(self) -> str:
        """The same database as a plain libpq URL, for psycopg and ``psql``."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw).expanduser()
        if kind == tuple[str, ...]:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not valid: {exc}") from exc


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``BULK_INGEST_*`` variables; unset ones keep defaults."""
    env = os.environ if environ is None else environ
    hints = get_type_hints(Settings)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(PREFIX + f.name.upper())
        if raw is not None:
            changes[f.name] = _parse(f.name, raw, hints[f.name])
    settings = Settings(**changes)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if settings.partitions < 1:
        raise SettingsError(f"{PREFIX}PARTITIONS must be at least 1")
    if settings.kafka_brokers < 1:
        raise SettingsError(f"{PREFIX}KAFKA_BROKERS must be at least 1")
    if not 1 <= settings.max_sync_records <= settings.max_async_records:
        raise SettingsError(
            f"{PREFIX}MAX_SYNC_RECORDS must be between 1 and {PREFIX}MAX_ASYNC_RECORDS"
        )
    if settings.max_body_bytes < 1024:
        raise SettingsError(f"{PREFIX}MAX_BODY_BYTES must be at least 1024")
    if settings.poison_attempts < 1:
        raise SettingsError(f"{PREFIX}POISON_ATTEMPTS must be at least 1")
    if settings.incomplete_job_seconds <= settings.kafka_delivery_timeout_seconds:
        raise SettingsError(
            f"{PREFIX}INCOMPLETE_JOB_SECONDS must exceed {PREFIX}KAFKA_DELIVERY_TIMEOUT_SECONDS: "
            "a job still being published is not incomplete"
        )
    framings = [framing.value for framing in Framing]
    if settings.event_framing not in framings:
        raise SettingsError(f"{PREFIX}EVENT_FRAMING must be one of {', '.join(framings)}")
    if settings.event_framing == Framing.CONFLUENT and not settings.schema_registry_url:
        raise SettingsError(
            f"{PREFIX}EVENT_FRAMING=confluent needs {PREFIX}SCHEMA_REGISTRY_URL: the schema ids "
            "come from the registry"
        )
    if settings.revert_retention_seconds <= 0:
        raise SettingsError(f"{PREFIX}REVERT_RETENTION_SECONDS must be positive")
    if settings.max_job_records < settings.max_async_records:
        raise SettingsError(f"{PREFIX}MAX_JOB_RECORDS must be at least {PREFIX}MAX_ASYNC_RECORDS")


def settings_documentation() -> list[tuple[str, str]]:
    """(variable, default) pairs, used to keep the README's table honest."""
    defaults = Settings()
    return [
        (PREFIX + f.name.upper(), str(getattr(defaults, f.name)))
        for f in dataclasses.fields(Settings)
    ]
