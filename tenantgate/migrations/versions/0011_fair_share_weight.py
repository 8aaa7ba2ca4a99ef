"""plans and tenants get fair_share_weight: their share of a saturated worker

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

NULL inherits (a tenant its plan's; a plan without one has weight 1), like every other limit column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("plans", "tenants"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("fair_share_weight", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("plans", "tenants"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("fair_share_weight")
