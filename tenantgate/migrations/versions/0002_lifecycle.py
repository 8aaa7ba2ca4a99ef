"""lifecycle: admin tokens, audit log, tenant names unique among live tenants, 64-bit token quotas

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at IS NULL")
# 0001 declared the unique constraint on tenants.name without a name: Postgres calls it tenants_name_key;
# SQLite keeps it anonymous, so batch mode names it through this convention to be able to drop it.
_SQLITE_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _name_constraint() -> str:
    return "uq_tenants_name" if op.get_bind().dialect.name == "sqlite" else "tenants_name_key"


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_index("ix_audit_log_target_id", "audit_log", ["target_id"])
    op.create_index("ix_audit_log_tenant_id", "audit_log", ["tenant_id"])

    with op.batch_alter_table("tenants", naming_convention=_SQLITE_CONVENTION) as batch_op:
        batch_op.drop_constraint(_name_constraint(), type_="unique")
    op.create_index(
        "uq_tenants_live_name", "tenants", ["name"], unique=True, postgresql_where=_LIVE, sqlite_where=_LIVE
    )

    if op.get_bind().dialect.name != "sqlite":  # SQLite integers are 64-bit already
        for table in ("plans", "tenants"):
            op.alter_column(table, "monthly_token_quota", type_=sa.BigInteger(), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for table in ("plans", "tenants"):
            op.alter_column(table, "monthly_token_quota", type_=sa.Integer(), existing_nullable=True)
    op.drop_index("uq_tenants_live_name", table_name="tenants")
    with op.batch_alter_table("tenants", naming_convention=_SQLITE_CONVENTION) as batch_op:
        batch_op.create_unique_constraint(_name_constraint(), ["name"])
    op.drop_index("ix_audit_log_tenant_id", table_name="audit_log")
    op.drop_index("ix_audit_log_target_id", table_name="audit_log")
    op.drop_index("ix_audit_log_created_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("admin_tokens")
