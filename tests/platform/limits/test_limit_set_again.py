"""A quota or budget set again after a while without one counts the month's usage so far, including what the tenant
spent meanwhile: the month counter of the earlier limit, left behind un-incremented while there was no limit, is not
trusted again. On the memory store and on Redis, over Postgres; the official SDK as the client."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.platform.limits.conftest import MESSAGES, me, wait_for
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush


@pytest.fixture
def on_postgres(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str, store_settings: dict[str, Any]
) -> Gateway:
    return gateway_factory(
        database_url=postgres_url, upstream_base_url=dev_upstream, metering_flush_interval_seconds=0.2, **store_settings
    )


def _ledger(gateway: Gateway, tenant_id: str) -> tuple[int, float]:
    flush(gateway)
    events = [e for e in all_events(gateway, tenant_id=tenant_id) if e["billable"]]
    tokens = sum(e["input_tokens"] + e["output_tokens"] for e in events)
    return tokens, float(sum((Decimal(e["cost_usd"]) for e in events), Decimal(0)))


def _counted(gateway: Gateway, key: str) -> tuple[int | None, float | None]:
    tenant = me(gateway, key)["limits"]["tenant"]
    return tenant["monthly_tokens"]["used"], tenant["monthly_budget_usd"]["spent"]


@pytest.mark.parametrize("limit", ["monthly_budget_usd", "monthly_token_quota"])
def test_usage_while_there_was_no_limit_counts_once_it_is_set_again(on_postgres: Gateway, limit: str) -> None:
    gateway = on_postgres
    value: Any = "10" if limit == "monthly_budget_usd" else 1_000_000
    tenant = gateway.create_tenant(f"reset-{uuid.uuid4().hex[:8]}", **{limit: value})
    key = gateway.create_key(tenant["id"])["key"]
    client = gateway.client(key)

    def ask() -> None:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=20)

    def counted() -> float | int | None:
        tokens, spent = _counted(gateway, key)
        return spent if limit == "monthly_budget_usd" else tokens

    def ledgered() -> float | int:
        tokens, spent = _ledger(gateway, tenant["id"])
        return spent if limit == "monthly_budget_usd" else tokens

    ask()
    assert wait_for(counted, ledgered()) == ledgered() > 0  # the counter of the first limit

    assert gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={limit: None}).status_code == 200
    for _ in range(3):
        ask()  # counted by no limit
    spent_meanwhile = ledgered()
    assert gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={limit: value}).status_code == 200

    assert wait_for(counted, spent_meanwhile, timeout=10) == spent_meanwhile
    ask()
    assert wait_for(counted, ledgered(), timeout=10) == ledgered()
