"""Tables of the metering store: raw usage events, their rollups, and per-plan/tenant price overrides.

Amounts of money are integers of nano-USD (1e-9 USD): exact on SQLite and Postgres alike, summable without
floating-point drift. Rounding happens once per event, so an event's error is below half a nano-dollar.

A billable event no price covers is stored with ``unpriced`` set (why: pricing.UNPRICED_*), no price version and
zero cost columns; every view of the usage (costs, invoices, exports) shows it as unpriced, never as a price of 0.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint, false, func, text
from sqlalchemy.orm import Mapped, mapped_column

from tenantgate.tenants.models import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); Postgres gets a BIGSERIAL.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class UsageEventRow(Base):
    """One proxied request. ``id`` is the idempotency key; ``seq`` is the order of ingestion (export cursor)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("id", name="uq_usage_events_id"),
        Index("ix_usage_events_tenant_occurred", "tenant_id", "occurred_at"),
        # Only the (few) unpriced events: `tenantgate prices missing` reads them without scanning a period.
        Index(
            "ix_usage_events_unpriced",
            "occurred_at",
            postgresql_where=text("unpriced IS NOT NULL"),
            sqlite_where=text("unpriced IS NOT NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column()
    ingested_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    tenant_id: Mapped[str] = mapped_column(String(40))
    api_key_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(Text)
    upstream: Mapped[str] = mapped_column(Text)
    upstream_model: Mapped[str | None] = mapped_column(Text)
    response_model: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean)
    billable: Mapped[bool] = mapped_column(Boolean)
    # Work done by the Batch API (one event per line of a batch's output), priced at the batch rate.
    batch: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    usage_source: Mapped[str | None] = mapped_column(String(16))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    input_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    output_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    image_tokens: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    client_disconnected: Mapped[bool] = mapped_column(Boolean)
    error_type: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    cost_input_nusd: Mapped[int] = mapped_column(BigInteger)
    cost_cached_input_nusd: Mapped[int] = mapped_column(BigInteger)
    cost_output_nusd: Mapped[int] = mapped_column(BigInteger)
    price_version: Mapped[str | None] = mapped_column(Text)
    service_tier: Mapped[str | None] = mapped_column(String(32))
    image_size: Mapped[str | None] = mapped_column(String(32))
    image_quality: Mapped[str | None] = mapped_column(String(32))
    cost_unit_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unit_price_usd: Mapped[str | None] = mapped_column(String(40))
    """USD per image, character or second (a decimal string), when the event was priced by the unit."""
    unpriced: Mapped[str | None] = mapped_column(String(16))
    # Hosted tools of a Responses answer: calls and container sessions, and what they cost.
    web_search_calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    file_search_calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    code_interpreter_sessions: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_web_search_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_file_search_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_code_interpreter_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")


class UsageRollupRow(Base):
    """Sums of billable events per bucket (``width`` seconds: 60, 3600 or 86400) x tenant x key x model x category x
    batch.

    Maintained in the transaction that inserts the events, only for events actually inserted, so a replay never
    counts twice and a rollup always equals the aggregation of its raw events.
    """

    __tablename__ = "usage_rollups"
    __table_args__ = (Index("ix_usage_rollups_width_bucket", "width", "bucket_start"),)

    width: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bucket_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    batch: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False, server_default=false())
    requests: Mapped[int] = mapped_column(BigInteger)
    estimated_requests: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    input_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    output_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    image_tokens: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    cost_input_nusd: Mapped[int] = mapped_column(BigInteger)
    cost_cached_input_nusd: Mapped[int] = mapped_column(BigInteger)
    cost_output_nusd: Mapped[int] = mapped_column(BigInteger)
    cost_unit_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unpriced_requests: Mapped[int] = mapped_column(BigInteger, server_default="0")
    web_search_requests: Mapped[int] = mapped_column(BigInteger, server_default="0")
    web_search_calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    file_search_calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    code_interpreter_sessions: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_web_search_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_file_search_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_code_interpreter_nusd: Mapped[int] = mapped_column(BigInteger, server_default="0")


class PriceOverrideRow(Base):
    """A price that replaces the repository's table for one plan or one tenant, from ``effective_from`` on.

    Rows are never edited: a new price is a new row, so the id named in an event's ``price_version`` keeps
    meaning what it meant. Prices are decimal strings in USD per 1M tokens (exact on every backend).
    """

    __tablename__ = "price_overrides"
    __table_args__ = (Index("ix_price_overrides_scope", "tenant_id", "plan_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    plan_id: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(Text)
    input_per_1m: Mapped[str] = mapped_column(String(32))
    cached_input_per_1m: Mapped[str | None] = mapped_column(String(32))
    output_per_1m: Mapped[str] = mapped_column(String(32))
    effective_from: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


ROLLUP_WIDTHS = (60, 3600, 86400)
# Counts of events per rollup row (billable ones; estimated: tokens estimated; unpriced: no price; web search: that
# searched the web) ...
ROLLUP_COUNTS = ("requests", "estimated_requests", "unpriced_requests", "web_search_requests")
# ... and sums of their columns.
ROLLUP_SUMS = (
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
    "cost_unit_nusd",
    "web_search_calls",
    "file_search_calls",
    "code_interpreter_sessions",
    "cost_web_search_nusd",
    "cost_file_search_nusd",
    "cost_code_interpreter_nusd",
)
COST_PARTS = (
    "cost_input_nusd",
    "cost_cached_input_nusd",
    "cost_output_nusd",
    "cost_unit_nusd",  # images, characters, seconds
    "cost_web_search_nusd",
    "cost_file_search_nusd",
    "cost_code_interpreter_nusd",
)
"""The columns an event's (and a rollup's) cost is the sum of."""
