"""usage events record what their price depends on and whether they had one

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Events keep the request options that choose a price (service tier, image size and quality), the cost and unit
price of what is sold by the unit (images, characters, seconds), and ``unpriced`` (why a billable event has no
price). Rollups add the unit costs and count unpriced requests. Existing rows stay valid: their unit cost is 0 and
they are not flagged (they were priced, or stored at 0 by the earlier code, which cannot be told apart now).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch_op:
        batch_op.add_column(sa.Column("service_tier", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("image_size", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("image_quality", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("cost_unit_nusd", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("unit_price_usd", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("unpriced", sa.String(16), nullable=True))
    op.create_index(
        "ix_usage_events_unpriced",
        "usage_events",
        ["occurred_at"],
        postgresql_where=sa.text("unpriced IS NOT NULL"),
        sqlite_where=sa.text("unpriced IS NOT NULL"),
    )
    with op.batch_alter_table("usage_rollups") as batch_op:
        batch_op.add_column(sa.Column("cost_unit_nusd", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("unpriced_requests", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("usage_rollups") as batch_op:
        batch_op.drop_column("unpriced_requests")
        batch_op.drop_column("cost_unit_nusd")
    op.drop_index("ix_usage_events_unpriced", table_name="usage_events")
    with op.batch_alter_table("usage_events") as batch_op:
        for name in ("unpriced", "unit_price_usd", "cost_unit_nusd", "image_quality", "image_size", "service_tier"):
            batch_op.drop_column(name)
