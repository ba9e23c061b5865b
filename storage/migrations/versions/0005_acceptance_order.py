"""Acceptance order: every job takes a number from one sequence; entity rows remember whose.

- ``jobs.accepted_seq``: taken from ``job_acceptance_seq`` when the job row is inserted (the
  gateway's jobs and imports, and Kafka-produced jobs when their first chunk is admitted);
- ``<entity>.last_seq`` / ``last_index``: the acceptance number and record index of the write
  that last reached the row. A write ordered before them loses (its outcome is UNCHANGED).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ENTITY_TABLES = ("customers", "products")


def upgrade() -> None:
    op.execute("CREATE SEQUENCE job_acceptance_seq AS bigint")
    op.add_column(
        "jobs",
        sa.Column(
            "accepted_seq",
            sa.BigInteger,
            nullable=False,
            server_default=sa.text("nextval('job_acceptance_seq')"),
        ),
    )
    op.execute("ALTER SEQUENCE job_acceptance_seq OWNED BY jobs.accepted_seq")
    for table in ENTITY_TABLES:
        op.add_column(table, sa.Column("last_seq", sa.BigInteger))
        op.add_column(table, sa.Column("last_index", sa.BigInteger))


def downgrade() -> None:
    for table in ENTITY_TABLES:
        op.drop_column(table, "last_index")
        op.drop_column(table, "last_seq")
    op.drop_column("jobs", "accepted_seq")
