"""Revert (design.md §8): the before-images a job's writes leave, and who reverted whom.

``before_images`` holds, for every entity row a real (not dry-run) job wrote, the row as it was
before that job first wrote it: ``before`` is the record's values (NULL: the job created the
row) and ``last_job_id`` / ``last_seq`` / ``last_index`` the row's previous last write, so a
restore puts the acceptance order back too. It is written in the persist transaction, first
write of a job to a key wins (``ON CONFLICT DO NOTHING``), and purged
``BULK_INGEST_REVERT_RETENTION_SECONDS`` after the job ended. A job is one tenant's and one
entity's, so ``(job_id, key)`` is the key; ``tenant_id`` and ``entity`` are kept for the reader.

``jobs.revert_of_job_id`` is set on a revert job (the job it reverts); ``jobs.reverted_by_job_id``
on the reverted job, by a conditional UPDATE in the transaction that registers the revert job, so
two concurrent reverts of one job cannot both be accepted.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "before_images",
        sa.Column("job_id", UUID(as_uuid=False), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=False), nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("record_id", UUID(as_uuid=False), nullable=False),
        sa.Column("before", JSONB),
        sa.Column("last_job_id", UUID(as_uuid=False)),
        sa.Column("last_seq", sa.BigInteger),
        sa.Column("last_index", sa.BigInteger),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("job_id", "key"),
    )
    op.add_column("jobs", sa.Column("revert_of_job_id", UUID(as_uuid=False)))
    op.add_column("jobs", sa.Column("reverted_by_job_id", UUID(as_uuid=False)))


def downgrade() -> None:
    op.drop_column("jobs", "reverted_by_job_id")
    op.drop_column("jobs", "revert_of_job_id")
    op.drop_table("before_images")
