"""Completion side: webhook deliveries (one per job) and every attempt made to deliver them.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    default = None if nullable else sa.func.now()
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("job_id", UUID(as_uuid=False), nullable=False, unique=True),
        sa.Column("tenant_id", UUID(as_uuid=False), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.BigInteger, nullable=False, server_default="0"),
        _ts("next_attempt_at"),
        _ts("cycle_started_at"),
        sa.Column("claim_token", sa.Text),
        sa.Column(
            "redeliver_requested", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        _ts("delivered_at"),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
    )
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column(
            "webhook_id",
            sa.Text,
            sa.ForeignKey("webhook_deliveries.webhook_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.BigInteger, nullable=False),
        _ts("at", nullable=False),
        sa.Column("status_code", sa.BigInteger),
        sa.Column("latency_ms", sa.BigInteger),
        sa.Column("error", sa.Text),
        _ts("next_attempt_at"),
        sa.PrimaryKeyConstraint("webhook_id", "attempt"),
    )
    op.create_index(
        "jobs_webhook_completed",
        "jobs",
        ["completed_at"],
        postgresql_where=sa.text("webhook_url IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("jobs_webhook_completed", table_name="jobs")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
