"""upstream objects record the account that holds them and the key that created them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upstream_objects") as batch_op:
        batch_op.add_column(sa.Column("account", sa.String(length=16), nullable=False, server_default="platform"))
        batch_op.add_column(sa.Column("api_key_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upstream_objects") as batch_op:
        batch_op.drop_column("api_key_id")
        batch_op.drop_column("account")
