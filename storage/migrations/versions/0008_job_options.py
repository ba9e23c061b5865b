"""Job options (design.md §8): what a job asked for beyond its records.

``dry_run`` (validate and report, write no entity row and no outcome event), ``defaults``
(field path → constant, JSONB), ``max_error_rate`` / ``min_records`` (the error-rate breaker)
and ``outcome_events`` (false: no per-record event on ``bulk.outcomes``); and
``error_rate_tripped_at``, set by the aggregator when the breaker trips on an import still
reading its file (the reader then stops and ends the job, as for a cancel). Every existing job
keeps the behaviour it had: no dry run, no defaults, no breaker, outcome events on.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("dry_run", sa.Boolean, nullable=False, server_default="false"))
    op.add_column("jobs", sa.Column("defaults", JSONB))
    op.add_column("jobs", sa.Column("max_error_rate", sa.Double))
    op.add_column("jobs", sa.Column("min_records", sa.Integer))
    op.add_column(
        "jobs", sa.Column("outcome_events", sa.Boolean, nullable=False, server_default="true")
    )
    op.add_column("jobs", sa.Column("error_rate_tripped_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    for column in (
        "error_rate_tripped_at",
        "outcome_events",
        "min_records",
        "max_error_rate",
        "defaults",
        "dry_run",
    ):
        op.drop_column("jobs", column)
