"""File imports: uploaded files, the imports that read them, and an index of live imports.

Revision ID: 0003
Revises: 0002
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    default = None if nullable else sa.func.now()
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("file_id", UUID(as_uuid=False), primary_key=True),
        sa.Column(
            "tenant_id", UUID(as_uuid=False), sa.ForeignKey("tenants.tenant_id"), nullable=False
        ),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("filename", sa.Text),
        sa.Column("content_type", sa.Text),
        sa.Column("profile", JSONB, nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at"),
        _ts("deleted_at"),
        _ts("purged_at"),
    )
    op.create_index("files_tenant_sha256", "files", ["tenant_id", "sha256"])
    op.create_index(
        "files_to_purge", "files", ["expires_at"], postgresql_where=sa.text("purged_at IS NULL")
    )
    op.create_table(
        "imports",
        sa.Column("job_id", UUID(as_uuid=False), sa.ForeignKey("jobs.job_id"), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=False), nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("file_id", UUID(as_uuid=False), sa.ForeignKey("files.file_id"), nullable=False),
        sa.Column("exclusive", sa.Boolean, nullable=False),
        sa.Column("options", JSONB, nullable=False),
        _ts("created_at", nullable=False),
    )
    op.create_index("imports_file", "imports", ["file_id"])
    op.create_index(
        "jobs_live_imports",
        "jobs",
        ["tenant_id", "entity"],
        postgresql_where=sa.text("source = 'file' AND status IN ('PENDING', 'READY', 'STARTED')"),
    )


def downgrade() -> None:
    op.drop_index("jobs_live_imports", table_name="jobs")
    op.drop_table("imports")
    op.drop_table("files")
