"""upstream object ownership and tenant upstream keys (BYOK)

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_objects",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("upstream", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_upstream_objects_tenant_id", "upstream_objects", ["tenant_id"])
    op.create_table(
        "tenant_upstream_keys",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("upstream", sa.String(length=100), nullable=False),
        sa.Column("ciphertext", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "upstream"),
    )


def downgrade() -> None:
    op.drop_table("tenant_upstream_keys")
    op.drop_index("ix_upstream_objects_tenant_id", table_name="upstream_objects")
    op.drop_table("upstream_objects")
