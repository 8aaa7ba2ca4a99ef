"""A monthly budget counts what the ledger bills, to the nano-dollar: requests that cost a fraction of a
micro-dollar (small embeddings) are spent, so many of them cannot pass a budget none of them reaches alone."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import redis

from tests.platform.limits.conftest import me, wait_for
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

_BUDGET = Decimal("0.00002")
_TEXT = "word " * 40  # 40 tokens at $0.02 per 1M: $0.0000008, less than a micro-dollar


def _spent(gateway: Gateway, key: str) -> dict[str, Any]:
    budget: dict[str, Any] = me(gateway, key)["limits"]["tenant"]["monthly_budget_usd"]
    return budget


def _embed_until_refused(gateway: Gateway, key: str, attempts: int) -> int:
    client = gateway.client(key)
    for admitted in range(attempts):
        try:
            client.embeddings.create(model="text-embedding-3-small", input=_TEXT)
        except openai.RateLimitError as refused:
            assert refused.code == "insufficient_quota"
            return admitted
        # Settled in the background: wait, so each admission sees the spend so far and not a reservation.
        wait_for(lambda: _spent(gateway, key)["reserved"], 0)
    return attempts


def _ledger(gateway: Gateway, tenant_id: str) -> tuple[int, Decimal]:
    flush(gateway)
    events = [e for e in all_events(gateway, tenant_id=tenant_id) if e["billable"]]
    return len(events), sum((Decimal(str(e["cost_usd"])) for e in events), Decimal(0))


def test_sub_micro_dollar_requests_are_spent_and_run_out_the_budget(limited: Gateway) -> None:
    tenant = limited.create_tenant("nano-budget", monthly_budget_usd=str(_BUDGET))
    key = limited.create_key(tenant["id"])["key"]
    admitted = _embed_until_refused(limited, key, 60)
    count, cost = _ledger(limited, tenant["id"])
    assert count == admitted and cost == admitted * Decimal("0.0000008")
    assert 20 <= admitted <= 25, admitted  # $0.00002 / $0.0000008 = 25, less the last request's reservation
    assert cost <= _BUDGET
    assert Decimal(str(_spent(limited, key)["spent"])) == cost


def test_a_reseeded_budget_counter_equals_the_one_charged_request_by_request(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str, redis_url: str, redis_prefix: str
) -> None:
    gateway = gateway_factory(
        database_url=postgres_url, upstream_base_url=dev_upstream, redis_url=redis_url, redis_prefix=redis_prefix
    )
    tenant = gateway.create_tenant("nano-reseed", monthly_budget_usd="1")
    key = gateway.create_key(tenant["id"])["key"]
    for _ in range(7):
        gateway.client(key).embeddings.create(model="text-embedding-3-small", input=_TEXT)
    wait_for(lambda: _spent(gateway, key)["reserved"], 0)
    charged = _spent(gateway, key)["spent"]
    _, cost = _ledger(gateway, tenant["id"])
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{redis_prefix}:lim:*"))  # the counter is seeded from the ledger again
    reseeded = _spent(gateway, key)["spent"]
    assert Decimal(str(charged)) == Decimal(str(reseeded)) == cost == Decimal("0.0000056")
