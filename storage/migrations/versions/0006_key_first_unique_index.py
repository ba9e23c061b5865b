"""Entity rows are unique per (key, tenant): the key leads the index.

The persist stage looks up the rows a batch touches with ``tenant_id = $1 AND key = ANY($2)``.
With the tenant leading the index, PostgreSQL's estimate for "the rows of this tenant" decides
the plan: for a tenant the statistics think small (a new one, or any tenant before the next
ANALYZE) the index is used for the tenant alone and the keys are filtered — every batch reads
all of the tenant's rows, quadratic in a large job. With the key leading, the keys are always
the index condition (docs/decisions.md, 2026-12-01).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEYS = {"customers": "external_id", "products": "sku"}


def upgrade() -> None:
    for table, key in KEYS.items():
        op.create_unique_constraint(f"{table}_key_tenant", table, [key, "tenant_id"])
        op.drop_constraint(f"{table}_tenant_key", table, type_="unique")


def downgrade() -> None:
    for table, key in KEYS.items():
        op.create_unique_constraint(f"{table}_tenant_key", table, ["tenant_id", key])
        op.drop_constraint(f"{table}_key_tenant", table, type_="unique")
