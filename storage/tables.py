"""SQLAlchemy Core tables: tenants, keys, jobs, the outcome ledger and the entity tables.

The outcome ledger (``record_outcomes``, primary key ``(job_id, index)``) is written in the same
transaction as the entity rows it describes; it is what makes a redelivered batch change nothing
and re-emit the same outcomes (docs/decisions.md, "Exactly one outcome per record").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", UUID(as_uuid=False), primary_key=True),
    Column("name", Text, nullable=False),
    Column("webhook_secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", Text, primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("key_prefix", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)

reference_types = Table(
    "reference_types",
    metadata,
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "kind", "value"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("entity", Text, nullable=False),
    Column("operation", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("processed", BigInteger, nullable=False, server_default="0"),
    Column("successful", BigInteger, nullable=False, server_default="0"),
    Column("failed", BigInteger, nullable=False, server_default="0"),
    Column("skipped", BigInteger, nullable=False, server_default="0"),
    Column("webhook_url", Text),
    Column("idempotency_key", Text),
    Column("request_hash", Text),
    Column("failure_reason", Text),
    Column("report_path", Text),
    Column("results_path", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    *_timestamps(),
    Column("abandoned_at", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    # Job options (design.md §8; domain.job_options).
    Column("dry_run", Boolean, nullable=False, server_default=text("false")),
    Column("defaults", JSONB),
    Column("max_error_rate", Double),
    Column("min_records", Integer),
    Column("outcome_events", Boolean, nullable=False, server_default=text("true")),
    Column("error_rate_tripped_at", DateTime(timezone=True)),
    Column(
        "accepted_seq",
        BigInteger,
        nullable=False,
        server_default=text("nextval('job_acceptance_seq')"),
    ),
    Column("parent_job_id", UUID(as_uuid=False)),  # a retry's parent (migration 0008)
    Column("revert_of_job_id", UUID(as_uuid=False)),  # a revert job's target (migration 0010)
    Column("reverted_by_job_id", UUID(as_uuid=False)),  # set once, by the revert (0010)
    Index("jobs_tenant_created", "tenant_id", text("created_at DESC"), text("job_id DESC")),
    Index(
        "jobs_tenant_idempotency_key",
        "tenant_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
)

record_outcomes = Table(
    "record_outcomes",
    metadata,
    Column("job_id", UUID(as_uuid=False), nullable=False),
    Column("index", BigInteger, nullable=False),
    Column("key", Text),
    Column("status", Text, nullable=False),
    Column("record_id", UUID(as_uuid=False)),
    Column("error_code", Text),
    Column("error_field", Text),
    Column("error_message", Text),
    Column("line", BigInteger),
    Column("record", JSONB),
    Column("source", JSONB),
    PrimaryKeyConstraint("job_id", "index"),
)

job_parts = Table(
    "job_parts",
    metadata,
    Column("job_id", UUID(as_uuid=False), nullable=False),
    Column("part_id", Text, nullable=False),
    Column("successful", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("skipped", BigInteger, nullable=False),
    Column("pending_events", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("job_id", "part_id"),
)


def _entity_table(name: str, key_column: str, *columns: Column[object]) -> Table:
    return Table(
        name,
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("tenant_id", UUID(as_uuid=False), nullable=False),
        Column(key_column, Text, nullable=False),
        *columns,
        Column("last_job_id", UUID(as_uuid=False)),
        *_timestamps(),
        Column("last_seq", BigInteger),
        Column("last_index", BigInteger),
        # The key leads: lookups by (tenant, keys) use the keys as the index condition whatever
        # the statistics say of the tenant (migration 0006).
        UniqueConstraint(key_column, "tenant_id", name=f"{name}_key_tenant"),
    )


customers = _entity_table(
    "customers",
    "external_id",
    Column("first_name", Text, nullable=False),
    Column("last_name", Text, nullable=False),
    Column("email", Text),
    Column("phone", Text),
    Column("company", Text),
    Column("addresses", JSONB),
    Column("important_dates", JSONB),
)

products = _entity_table(
    "products",
    "sku",
    Column("name", Text, nullable=False),
    Column("price", Double, nullable=False),
    Column("currency", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("tags", JSONB),
)

ENTITY_TABLES: dict[str, Table] = {"customers": customers, "products": products}

__all__ = [
    "ENTITY_TABLES",
    "api_keys",
    "customers",
    "job_parts",
    "jobs",
    "metadata",
    "products",
    "record_outcomes",
    "reference_types",
    "tenants",
]

# --- completion side: webhook deliveries and their attempts (migration 0002) ---

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("webhook_id", Text, primary_key=True),
    Column("job_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("tenant_id", UUID(as_uuid=False), nullable=False),
    Column("url", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", BigInteger, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("cycle_started_at", DateTime(timezone=True)),
    Column("claim_token", Text),
    Column("redeliver_requested", Boolean, nullable=False, server_default=text("false")),
    Column("delivered_at", DateTime(timezone=True)),
    *_timestamps(),
    Index(
        "webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("state = 'PENDING'"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "webhook_id",
        Text,
        ForeignKey("webhook_deliveries.webhook_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", BigInteger),
    Column("latency_ms", BigInteger),
    Column("error", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("webhook_id", "attempt"),
)

# Finds terminal jobs whose webhook has no delivery yet (the dispatcher's safety-net sweep).
Index(
    "jobs_webhook_completed",
    jobs.c.completed_at,
    postgresql_where=text("webhook_url IS NOT NULL"),
)

__all__ += ["webhook_attempts", "webhook_deliveries"]

# --- file imports: uploaded files and the imports that read them (migration 0003) ---

files = Table(
    "files",
    metadata,
    Column("file_id", UUID(as_uuid=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("sha256", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("format", Text, nullable=False),
    Column("storage", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("filename", Text),
    Column("content_type", Text),
    Column("profile", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    Column("purged_at", DateTime(timezone=True)),
    Index("files_tenant_sha256", "tenant_id", "sha256"),
    Index(
        "files_to_purge",
        "expires_at",
        postgresql_where=text("purged_at IS NULL"),
    ),
)

imports = Table(
    "imports",
    metadata,
    Column("job_id", UUID(as_uuid=False), ForeignKey("jobs.job_id"), primary_key=True),
    Column("tenant_id", UUID(as_uuid=False), nullable=False),
    Column("entity", Text, nullable=False),
    Column("file_id", UUID(as_uuid=False), ForeignKey("files.file_id"), nullable=False),
    Column("exclusive", Boolean, nullable=False),
    Column("options", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("imports_file", "file_id"),
)

# Live file imports of a tenant and entity: the exclusivity check reads only these.
Index(
    "jobs_live_imports",
    jobs.c.tenant_id,
    jobs.c.entity,
    postgresql_where=text("source = 'file' AND status IN ('PENDING', 'READY', 'STARTED')"),
)

__all__ += ["files", "imports"]

# --- hostile input: chunk bookkeeping and recorded message failures (migration 0004) ---

job_chunks = Table(
    "job_chunks",
    metadata,
    Column("job_id", UUID(as_uuid=False), nullable=False),
    Column("chunk_index", Integer, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("first_index", BigInteger, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "chunk_index"),
)

message_failures = Table(
    "message_failures",
    metadata,
    Column("consumer_group", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error_class", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("dead_lettered_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("consumer_group", "topic", "partition", "offset"),
)

__all__ += ["job_chunks", "message_failures"]

# A job's retries, found by their parent (migration 0008).
Index(
    "jobs_tenant_parent",
    jobs.c.tenant_id,
    jobs.c.parent_job_id,
    postgresql_where=text("parent_job_id IS NOT NULL"),
)

# What a job's writes replaced, for reverting it (migration 0010, storage.before_images).
before_images = Table(
    "before_images",
    metadata,
    Column("job_id", UUID(as_uuid=False), nullable=False),
    Column("key", Text, nullable=False),
    Column("tenant_id", UUID(as_uuid=False), nullable=False),
    Column("entity", Text, nullable=False),
    Column("record_id", UUID(as_uuid=False), nullable=False),
    Column("before", JSONB),
    Column("last_job_id", UUID(as_uuid=False)),
    Column("last_seq", BigInteger),
    Column("last_index", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "key"),
)

__all__ += ["before_images"]
