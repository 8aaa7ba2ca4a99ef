"""files, uploads and batches: the tenants' object index, the poller's lease, batch queue limits, batch usage

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

``tenant_objects`` lists what a tenant created upstream (files, uploads, batches, background responses) so lists
are answered from it, never from the shared upstream account; ``leases`` lets one process at a time poll them.
Plans and tenants get ``batch_queue_tokens``. Usage events and rollups get ``batch`` (the Usage API's filter and
group-by); it joins the rollups' primary key. Existing rows are not batch work.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ROLLUP_KEY = ["width", "tenant_id", "bucket_start", "api_key_id", "model", "category"]


def upgrade() -> None:
    op.create_table(
        "tenant_objects",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=True),
        sa.Column("upstream", sa.String(100), nullable=False),
        sa.Column("account", sa.String(16), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.Column("poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tenant_objects_list", "tenant_objects", ["tenant_id", "kind", "created", "id"])
    op.create_index("ix_tenant_objects_poll", "tenant_objects", ["poll_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    for table in ("plans", "tenants"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("batch_queue_tokens", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("usage_events") as batch_op:
        batch_op.add_column(sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()))
    _rollup_key([*_ROLLUP_KEY, "batch"], add_batch=True)


def _rollup_key(columns: list[str], *, add_batch: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        if add_batch:
            op.add_column("usage_rollups", sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()))
        op.drop_constraint("usage_rollups_pkey", "usage_rollups", type_="primary")
        op.create_primary_key("usage_rollups_pkey", "usage_rollups", columns)
        if not add_batch:
            op.drop_column("usage_rollups", "batch")
        return
    # SQLite cannot alter a primary key: the table is copied with the new one (SQLAlchemy warns that the copy's key
    # differs from the reflected table's, which is the point).
    with warnings.catch_warnings(), op.batch_alter_table("usage_rollups", recreate="always") as batch_op:
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        if add_batch:
            batch_op.add_column(sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_primary_key("pk_usage_rollups", columns)
        if not add_batch:
            batch_op.drop_column("batch")


def downgrade() -> None:
    # Batch and other rollups of the same key become one row again (every other column is a sum).
    existing = [c["name"] for c in sa.inspect(op.get_bind()).get_columns("usage_rollups")]
    sums_of = [name for name in existing if name not in (*_ROLLUP_KEY, "batch")]
    key, sums = ", ".join(_ROLLUP_KEY), ", ".join(f"sum({name}) AS {name}" for name in sums_of)
    op.execute(f"CREATE TABLE usage_rollups_merged AS SELECT {key}, {sums} FROM usage_rollups GROUP BY {key}")
    op.execute("DELETE FROM usage_rollups")
    _rollup_key(_ROLLUP_KEY, add_batch=False)
    columns = ", ".join((*_ROLLUP_KEY, *sums_of))
    op.execute(f"INSERT INTO usage_rollups ({columns}) SELECT {columns} FROM usage_rollups_merged")
    op.drop_table("usage_rollups_merged")
    with op.batch_alter_table("usage_events") as batch_op:
        batch_op.drop_column("batch")
    for table in ("plans", "tenants"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("batch_queue_tokens")
    op.drop_table("leases")
    op.drop_index("ix_tenant_objects_poll", table_name="tenant_objects")
    op.drop_index("ix_tenant_objects_list", table_name="tenant_objects")
    op.drop_table("tenant_objects")
