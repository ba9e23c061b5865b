"""Hostile input: chunk bookkeeping, recorded message failures, fill parts, job activity.

- ``job_chunks``: every request chunk a job has taken (index, first record, count), so a chunk
  that overlaps another or disagrees on ``chunk_count`` is refused;
- ``message_failures``: failures a worker recorded itself for one Kafka message, counted
  towards ``BULK_INGEST_POISON_ATTEMPTS``;
- ``job_parts.pending_events``: a fill part (records failed by the service itself:
  ``RecordNotProcessed``, ``RecordNotReceived``) whose outcome events are not yet announced;
- ``jobs.abandoned_at``: when the gateway gave up publishing the job; the incomplete-job
  sweeper reads it, and ``job_chunks.received_at``.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LIVE = "status IN ('PENDING', 'READY', 'STARTED')"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("abandoned_at", sa.DateTime(timezone=True)))
    op.create_index("jobs_live", "jobs", ["updated_at"], postgresql_where=sa.text(_LIVE))
    op.create_table(
        "job_chunks",
        sa.Column("job_id", UUID(as_uuid=False), nullable=False),
        sa.Column("chunk_index", sa.Integer, nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("first_index", sa.BigInteger, nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("job_id", "chunk_index"),
    )
    op.add_column(
        "job_parts",
        sa.Column("pending_events", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "job_parts_pending_events",
        "job_parts",
        ["job_id"],
        postgresql_where=sa.text("pending_events"),
    )
    op.create_table(
        "message_failures",
        sa.Column("consumer_group", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error_class", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column(
            "first_failed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column(
            "last_failed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("consumer_group", "topic", "partition", "offset"),
    )


def downgrade() -> None:
    op.drop_table("message_failures")
    op.drop_index("job_parts_pending_events", table_name="job_parts")
    op.drop_column("job_parts", "pending_events")
    op.drop_table("job_chunks")
    op.drop_index("jobs_live", table_name="jobs")
    op.drop_column("jobs", "abandoned_at")
