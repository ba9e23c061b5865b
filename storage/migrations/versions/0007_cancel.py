"""Cancel: a job remembers that it was asked to stop.

``jobs.cancel_requested_at`` is set by ``POST /jobs/{id}/cancel`` on a live job (once: a second
request keeps the first time). The job row's owner, the aggregator, then skips every record not
yet written as ``JobCancelled`` and ends the job ``CANCELLED``; an import still reading its file
stops at its next chunk and does the same for the rows it read.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("jobs", "cancel_requested_at")
