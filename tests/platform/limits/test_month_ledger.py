"""Monthly quotas and budgets are views of the ledger: they survive restarts and lost Redis keys, count usage from
before they were set, and hold under concurrency (each request reserves its worst case while it runs)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from tenantgate.platform.app import create_app
from tenantgate.platform.serving import uvicorn_options
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.platform.limits.conftest import me, wait_for
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.server import ServedApp

MESSAGES = [{"role": "user", "content": "Count the words of this question for the tenant ledger please"}]


def _ask(gateway: Gateway, key: str, max_tokens: int = 10) -> Any:
    return gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=max_tokens)


def _billed(gateway: Gateway, tenant_id: str) -> tuple[int, Decimal]:
    flush(gateway)
    events = [e for e in all_events(gateway, tenant_id=tenant_id) if e["billable"]]
    tokens = sum(e["input_tokens"] + e["output_tokens"] for e in events)
    return tokens, sum((Decimal(str(e["cost_usd"])) for e in events), Decimal(0))


class Restartable:
    """One gateway process's worth of state at a time, over the same database and spool directory."""

    def __init__(self, **settings: Any) -> None:
        self.settings = make_settings(**settings)
        self.served: ServedApp | None = None
        self.gateway: Gateway | None = None

    def start(self) -> Gateway:
        app = create_app(self.settings)
        self.served = ServedApp(app, **uvicorn_options(self.settings)).__enter__()
        assert self.served.loop is not None
        self.gateway = Gateway(self.served.url, ADMIN_TOKEN, self.settings, app.runtime, self.served.loop)
        return self.gateway

    def stop(self) -> None:
        if self.served is not None:
            self.served.__exit__(None, None, None)
            self.served = None


@pytest.fixture
def restartable(tmp_path: Path, sqlite_url: str, dev_upstream: str) -> Iterator[Callable[..., Restartable]]:
    made: list[Restartable] = []

    def make(**settings: Any) -> Restartable:
        made.append(
            Restartable(
                database_url=sqlite_url, upstream_base_url=dev_upstream, spool_dir=tmp_path / "spool", **settings
            )
        )
        return made[-1]

    yield make
    for one in made:
        one.stop()


def test_quota_and_budget_survive_a_restart_with_memory_limits(restartable: Callable[..., Restartable]) -> None:
    server = restartable()
    gateway = server.start()
    tenant = gateway.create_tenant("ledger-restart", monthly_token_quota=200, monthly_budget_usd="1")
    key = gateway.create_key(tenant["id"])["key"]
    answered = 0
    with pytest.raises(openai.RateLimitError):
        for _ in range(20):
            _ask(gateway, key)
            answered += 1
    assert 3 <= answered < 20
    before = me(gateway, key)["limits"]["tenant"]
    tokens, _ = _billed(gateway, tenant["id"])
    assert before["monthly_tokens"]["used"] == tokens
    server.stop()
    gateway = server.start()  # a new process: its memory holds no counters
    after = me(gateway, key)["limits"]["tenant"]
    assert after["monthly_tokens"]["used"] == before["monthly_tokens"]["used"]
    assert after["monthly_budget_usd"]["spent"] == pytest.approx(before["monthly_budget_usd"]["spent"], abs=2e-6)
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(gateway, key)
    assert refused.value.code == "insufficient_quota"


def test_quota_survives_redis_losing_its_keys(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str, redis_url: str, redis_prefix: str
) -> None:
    gateway = gateway_factory(
        database_url=postgres_url, upstream_base_url=dev_upstream, redis_url=redis_url, redis_prefix=redis_prefix
    )
    tenant = gateway.create_tenant("ledger-flush", monthly_token_quota=200, monthly_budget_usd="1")
    key = gateway.create_key(tenant["id"])["key"]
    with pytest.raises(openai.RateLimitError):
        for _ in range(20):
            _ask(gateway, key)
    flush(gateway)
    before = wait_for(lambda: me(gateway, key)["limits"]["tenant"]["monthly_tokens"]["reserved"], 0)
    assert before == 0
    used = me(gateway, key)["limits"]["tenant"]["monthly_tokens"]["used"]
    spent = me(gateway, key)["limits"]["tenant"]["monthly_budget_usd"]["spent"]
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{redis_prefix}:lim:*"))  # what FLUSHALL, a restart or a failover does to us
    after = me(gateway, key)["limits"]["tenant"]
    assert after["monthly_tokens"]["used"] == used and after["monthly_budget_usd"]["spent"] == pytest.approx(spent)
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(gateway, key)
    assert refused.value.code == "insufficient_quota"


def test_a_quota_set_mid_month_counts_the_months_usage_so_far(restartable: Callable[..., Restartable]) -> None:
    # The writer is slow on purpose: the usage is still in the spool when the quota is set.
    gateway = restartable(metering_flush_interval_seconds=3600).start()
    tenant = gateway.create_tenant("ledger-late")
    key = gateway.create_key(tenant["id"])["key"]
    for _ in range(4):
        _ask(gateway, key)
    response = gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"monthly_token_quota": 60})
    assert response.status_code == 200
    quota = me(gateway, key)["limits"]["tenant"]["monthly_tokens"]
    tokens, _ = _billed(gateway, tenant["id"])
    assert quota["used"] == tokens > 60
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(gateway, key)
    assert refused.value.code == "insufficient_quota"


@pytest.fixture
def two_processes(
    gateway_factory: Callable[..., Gateway],
    postgres_url: str,
    slow_dev_upstream: str,
    redis_url: str,
    redis_prefix: str,
) -> tuple[Gateway, Gateway]:
    settings = dict(
        database_url=postgres_url,
        upstream_base_url=slow_dev_upstream,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        # On a busy test machine Redis may be slow to answer: a fallback to per-process memory limits (fail open,
        # by design) is not what this test is about.
        limits_redis_timeout_ms=5000,
    )
    return gateway_factory(**settings), gateway_factory(**settings)


@pytest.mark.parametrize("limit", ["budget", "quota"])
def test_fifty_concurrent_requests_never_overspend(two_processes: tuple[Gateway, Gateway], limit: str) -> None:
    first, second = two_processes
    # About ten requests' worth: a request costs about $0.012 at this tenant's price (and some 30 tokens).
    fields = {"monthly_budget_usd": "0.12"} if limit == "budget" else {"monthly_token_quota": 300}
    tenant = first.create_tenant(f"ledger-{limit}", **fields)
    key = first.create_key(tenant["id"])["key"]
    price = {"model": "gpt-4o-mini", "tenant_id": tenant["id"], "input_per_1m": "100", "output_per_1m": "1000"}
    assert first.admin("POST", "/admin/prices", json=price).status_code == 201
    wait_for(lambda: first.runtime.metering.prices.price_for("gpt-4o-mini", tenant_id=tenant["id"])[0].input, 100)
    wait_for(lambda: second.runtime.metering.prices.price_for("gpt-4o-mini", tenant_id=tenant["id"])[0].input, 100)

    def one(index: int) -> bool:
        try:
            _ask(first if index % 2 else second, key)
        except openai.RateLimitError as refused:
            assert refused.code == "insufficient_quota"
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        admitted = sum(pool.map(one, range(50)))
    flush(second)
    tokens, cost = _billed(first, tenant["id"])
    per_request_tokens, per_request_cost = tokens / admitted, cost / admitted
    assert 5 <= admitted <= 12, admitted
    if limit == "budget":
        # Never more than the budget plus one request's cost beyond its reservation (here: its prompt estimate).
        assert cost <= Decimal("0.12") + per_request_cost / 10, cost
    else:
        assert tokens <= 300 + per_request_tokens / 10, tokens


def test_families_sold_by_the_unit_count_toward_the_budget(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """Speech (per character) and images (per image) report no token usage: they are charged all the same, and an
    image request holds its price per image x n while it runs."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)
    tenant = gateway.create_tenant("ledger-units", monthly_budget_usd="0.1")
    key = gateway.create_key(tenant["id"])["key"]
    client = gateway.client(key)
    client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 1000).read()  # $15 per 1M characters
    spent = wait_for(lambda: me(gateway, key)["limits"]["tenant"]["monthly_budget_usd"]["spent"], 0.015)
    assert spent == pytest.approx(0.015)
    client.images.generate(model="dall-e-3", prompt="a gateway", n=1, size="1024x1024")  # $0.04
    assert wait_for(lambda: me(gateway, key)["limits"]["tenant"]["monthly_budget_usd"]["spent"], 0.055) == (
        pytest.approx(0.055)
    )
    with pytest.raises(openai.RateLimitError) as refused:  # two more images would hold $0.08 > the $0.045 left
        client.images.generate(model="dall-e-3", prompt="a gateway", n=2, size="1024x1024")
    assert refused.value.code == "insufficient_quota"
