"""vector stores: the hourly storage the Usage API's vector_stores family reports

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

``vector_store_usage`` keeps, per vector store and UTC hour, the most ``usage_bytes`` the gateway saw the store
hold (on every answer about it, and from the poller). Vector stores themselves are rows of ``tenant_objects``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_store_usage",
        sa.Column("vector_store_id", sa.String(200), primary_key=True),
        sa.Column("hour", sa.BigInteger(), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("usage_bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_vector_store_usage_tenant_hour", "vector_store_usage", ["tenant_id", "hour"])


def downgrade() -> None:
    op.drop_index("ix_vector_store_usage_tenant_hour", table_name="vector_store_usage")
    op.drop_table("vector_store_usage")
