"""Fix and retry: a retry job remembers the job it retries.

``jobs.parent_job_id`` is set only on a child job — one made by ``POST /jobs/{id}/retry`` or by
an import with ``retry_of`` — and names the terminal job whose failed and skipped records it
carries again; the parent row never changes. ``GET /jobs?parent_job_id=`` reads the children
through the partial index (tenant first: a tenant only ever lists its own).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("parent_job_id", UUID(as_uuid=False)))
    op.create_index(
        "jobs_tenant_parent",
        "jobs",
        ["tenant_id", "parent_job_id"],
        postgresql_where=sa.text("parent_job_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("jobs_tenant_parent", table_name="jobs")
    op.drop_column("jobs", "parent_job_id")
