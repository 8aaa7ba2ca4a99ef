"""Every list of a usage event's fields is derived from ``UsageEvent``; what cannot be derived is held to it here:
the table model, the migrated schema, what the hook records, and what the events API, its schema and the CSV show."""

from __future__ import annotations

import csv
import io
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tenantgate.core.context import RequestContext
from tenantgate.core.exchange import Exchange, Usage
from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.metering.events import from_exchange
from tenantgate.tenants.metering.models import UsageEventRow
from tenantgate.tenants.metering.usage_event import (
    COLUMN_NAMES,
    COLUMNS,
    EXPORT_FIELDS,
    PRICED_FIELDS,
    REQUIRED_FIELDS,
    UsageEventOut,
)

_SQL_TYPES = {"text": (sa.String, sa.Text), "int8": (sa.BigInteger,), "int4": (sa.Integer,), "bool": (sa.Boolean,)}
_STORE_ONLY = {"seq", "ingested_at"}


def test_the_table_model_stores_exactly_the_declared_fields_with_their_types() -> None:
    table = UsageEventRow.__table__
    assert {c.name for c in table.columns} - _STORE_ONLY == set(COLUMN_NAMES)
    for name, pg in COLUMNS:
        column = table.columns[name]
        if name == "occurred_at":
            assert isinstance(
                column.type.impl if hasattr(column.type, "impl") else column.type, sa.DateTime
            )  # to_timestamp()
            continue
        assert isinstance(column.type, _SQL_TYPES[pg]), (name, column.type, pg)


async def test_the_migrated_schema_has_every_declared_column(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: {col["name"] for col in sa.inspect(c).get_columns("usage_events")})
    finally:
        await engine.dispose()
    assert names - _STORE_ONLY == set(COLUMN_NAMES)


def test_the_hook_records_every_field_but_those_the_writer_prices() -> None:
    principal = Principal("key_1", "tg-x", "k", "ten_1", "t", True, None, Limits(), Limits(), None)
    exchange = Exchange(ctx=RequestContext("req_1", principal), operation="chat", path="/v1/chat/completions")
    exchange.model, exchange.status, exchange.attempts = "gpt-4o-mini", 200, 1
    exchange.usage = Usage(input_tokens=3, output_tokens=2)
    event = from_exchange(exchange, settled=True)
    assert set(event) == set(COLUMN_NAMES) - PRICED_FIELDS
    assert set(event) >= REQUIRED_FIELDS
    assert event["input_tokens"] == 3 and event["billable"] is True


def test_the_events_api_its_schema_and_the_csv_show_the_export_fields(gateway: Any) -> None:
    key = gateway.new_key("usage-event")
    gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    from tests.support.metering import flush

    flush(gateway)
    page = gateway.admin("GET", "/admin/usage/events", params={"tenant_id": key["tenant_id"]}).json()
    assert list(page["data"][0]) == ["object", *EXPORT_FIELDS]
    UsageEventOut.model_validate(page["data"][0])
    schema = gateway.admin("GET", "/openapi.json").json()["components"]["schemas"]["UsageEventOut"]
    assert list(schema["properties"]) == ["object", *EXPORT_FIELDS]
    exported = gateway.admin("GET", "/admin/usage/export.csv", params={"tenant_id": key["tenant_id"]}).text
    assert next(csv.reader(io.StringIO(exported))) == list(EXPORT_FIELDS)
