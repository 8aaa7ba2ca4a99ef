"""tenant upstream keys (BYOK) may carry the tenant's own base URL

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_upstream_keys") as batch_op:
        batch_op.add_column(sa.Column("base_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant_upstream_keys") as batch_op:
        batch_op.drop_column("base_url")
