"""Core schema: tenants, API keys, reference types, jobs, the outcome ledger, entity tables.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    default = None if nullable else sa.func.now()
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def _entity_table(name: str, key_column: str, *columns: sa.Column[Any]) -> None:
    op.create_table(
        name,
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=False), nullable=False),
        sa.Column(key_column, sa.Text, nullable=False),
        *columns,
        sa.Column("last_job_id", UUID(as_uuid=False)),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("tenant_id", key_column, name=f"{name}_tenant_key"),
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("webhook_secret", sa.Text, nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.Text, primary_key=True),
        sa.Column(
            "tenant_id", UUID(as_uuid=False), sa.ForeignKey("tenants.tenant_id"), nullable=False
        ),
        sa.Column("key_prefix", sa.Text, nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
    )
    op.create_table(
        "reference_types",
        sa.Column(
            "tenant_id", UUID(as_uuid=False), sa.ForeignKey("tenants.tenant_id"), nullable=False
        ),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "value"),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", UUID(as_uuid=False), primary_key=True),
        sa.Column(
            "tenant_id", UUID(as_uuid=False), sa.ForeignKey("tenants.tenant_id"), nullable=False
        ),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("successful", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("skipped", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("webhook_url", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text),
        sa.Column("failure_reason", sa.Text),
        sa.Column("report_path", sa.Text),
        sa.Column("results_path", sa.Text),
        _ts("started_at", nullable=True),
        _ts("completed_at", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index(
        "jobs_tenant_created",
        "jobs",
        ["tenant_id", sa.text("created_at DESC"), sa.text("job_id DESC")],
    )
    op.create_index(
        "jobs_tenant_idempotency_key",
        "jobs",
        ["tenant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "record_outcomes",
        sa.Column("job_id", UUID(as_uuid=False), nullable=False),
        sa.Column("index", sa.BigInteger, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("record_id", UUID(as_uuid=False)),
        sa.Column("error_code", sa.Text),
        sa.Column("error_field", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("line", sa.BigInteger),
        sa.Column("record", JSONB),
        sa.Column("source", JSONB),
        sa.PrimaryKeyConstraint("job_id", "index"),
    )
    op.create_table(
        "job_parts",
        sa.Column("job_id", UUID(as_uuid=False), nullable=False),
        sa.Column("part_id", sa.Text, nullable=False),
        sa.Column("successful", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("skipped", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "part_id"),
    )
    _entity_table(
        "customers",
        "external_id",
        sa.Column("first_name", sa.Text, nullable=False),
        sa.Column("last_name", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("company", sa.Text),
        sa.Column("addresses", JSONB),
        sa.Column("important_dates", JSONB),
    )
    _entity_table(
        "products",
        "sku",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("price", sa.Double, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("tags", JSONB),
    )


def downgrade() -> None:
    for table in (
        "products",
        "customers",
        "job_parts",
        "record_outcomes",
        "jobs",
        "reference_types",
        "api_keys",
        "tenants",
    ):
        op.drop_table(table)
