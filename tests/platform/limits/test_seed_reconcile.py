"""A month counter seeded after Redis lost its keys is corrected once every process has written its usage: what
another process had admitted but not yet written when the seed read the ledger is not lost for the month."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import redis
from openai.types.chat import ChatCompletionMessageParam

from tests.platform.limits.conftest import me, wait_for
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to the gateway"}]


def test_usage_another_process_had_not_written_is_counted_after_a_flush(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str, redis_url: str, redis_prefix: str
) -> None:
    shared = dict(
        database_url=postgres_url,
        upstream_base_url=dev_upstream,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        limits_redis_timeout_ms=5000,
    )
    # The seeding process corrects its seed 2.3 s after it (its writer's interval: 0.1 s); the other one's writer
    # is slow, so what it serves stays in its spool until the test flushes it.
    seeder = gateway_factory(**shared, metering_flush_interval_seconds=0.1)
    other = gateway_factory(**shared, metering_flush_interval_seconds=3600)
    tenant = seeder.create_tenant("reconcile", monthly_token_quota=1_000_000, monthly_budget_usd="10")
    key = seeder.create_key(tenant["id"])["key"]
    for _ in range(3):
        other.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    wait_for(lambda: me(other, key)["limits"]["tenant"]["monthly_tokens"]["reserved"], 0)
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{redis_prefix}:lim:*"))  # Redis loses the counters that held those requests
    seeded = me(seeder, key)["limits"]["tenant"]  # seeded from the database and the seeder's own (empty) spool
    assert seeded["monthly_tokens"]["used"] == 0
    flush(other)  # the other process writes what it served
    events = [e for e in all_events(seeder, tenant_id=tenant["id"]) if e["billable"]]
    tokens = sum(e["input_tokens"] + e["output_tokens"] for e in events)
    cost = sum((Decimal(str(e["cost_usd"])) for e in events), Decimal(0))
    assert len(events) == 3 and tokens > 0
    # Each counter is corrected by its own task (tokens and budget a moment apart): wait for both.
    deadline = time.monotonic() + 10

    def corrected() -> tuple[int, Decimal]:
        month = me(seeder, key)["limits"]["tenant"]
        return month["monthly_tokens"]["used"], Decimal(str(month["monthly_budget_usd"]["spent"]))

    seen = corrected()
    while seen != (tokens, cost) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = corrected()
    assert seen == (tokens, cost)


def test_the_request_that_seeds_a_counter_is_not_counted_twice(limited: Gateway) -> None:
    """The request whose admission seeds the counter started before the seed and ends after it: it is charged to the
    new counter when it ends, and the correction must leave it out."""
    gateway = limited
    gateway.runtime.limiter.reconcile_after = 0.5  # the default waits for every process's writer (seconds)
    tenant = gateway.create_tenant("reconcile-self", monthly_token_quota=1_000_000, monthly_budget_usd="10")
    key = gateway.create_key(tenant["id"])["key"]
    for _ in range(2):
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    flush(gateway)
    time.sleep(gateway.runtime.limiter.reconcile_after + 1)  # the correction has run
    events = [e for e in all_events(gateway, tenant_id=tenant["id"]) if e["billable"]]
    month = me(gateway, key)["limits"]["tenant"]
    assert month["monthly_tokens"]["used"] == sum(e["input_tokens"] + e["output_tokens"] for e in events)
    assert Decimal(str(month["monthly_budget_usd"]["spent"])) == sum(
        (Decimal(str(e["cost_usd"])) for e in events), Decimal(0)
    )
