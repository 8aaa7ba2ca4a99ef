"""metering: usage events, rollups, price overrides

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0004"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ROLLUP_SUMS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "image_tokens",
    "quantity",
    "cost_input_nusd",
    "cost_cached_input_nusd",
    "cost_output_nusd",
)


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "ingested_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("upstream", sa.Text(), nullable=False),
        sa.Column("upstream_model", sa.Text(), nullable=True),
        sa.Column("response_model", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("usage_source", sa.String(16), nullable=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "input_tokens",
                "cached_input_tokens",
                "output_tokens",
                "reasoning_tokens",
                "input_audio_tokens",
                "output_audio_tokens",
                "image_tokens",
                "quantity",
            )
        ),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("client_disconnected", sa.Boolean(), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cost_input_nusd", sa.BigInteger(), nullable=False),
        sa.Column("cost_cached_input_nusd", sa.BigInteger(), nullable=False),
        sa.Column("cost_output_nusd", sa.BigInteger(), nullable=False),
        sa.Column("price_version", sa.Text(), nullable=True),
        sa.UniqueConstraint("id", name="uq_usage_events_id"),
    )
    op.create_index("ix_usage_events_tenant_occurred", "usage_events", ["tenant_id", "occurred_at"])
    op.create_table(
        "usage_rollups",
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("estimated_requests", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _ROLLUP_SUMS),
        sa.PrimaryKeyConstraint("width", "tenant_id", "bucket_start", "api_key_id", "model", "category"),
    )
    op.create_index("ix_usage_rollups_width_bucket", "usage_rollups", ["width", "bucket_start"])
    op.create_table(
        "price_overrides",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), nullable=True),
        sa.Column("plan_id", sa.String(40), nullable=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("input_per_1m", sa.String(32), nullable=False),
        sa.Column("cached_input_per_1m", sa.String(32), nullable=True),
        sa.Column("output_per_1m", sa.String(32), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False),
    )
    op.create_index("ix_price_overrides_scope", "price_overrides", ["tenant_id", "plan_id"])


def downgrade() -> None:
    op.drop_index("ix_price_overrides_scope", table_name="price_overrides")
    op.drop_table("price_overrides")
    op.drop_index("ix_usage_rollups_width_bucket", table_name="usage_rollups")
    op.drop_table("usage_rollups")
    op.drop_index("ix_usage_events_tenant_occurred", table_name="usage_events")
    op.drop_table("usage_events")
