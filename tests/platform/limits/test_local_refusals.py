"""Refusals from memory: a key or tenant over its RPM is refused without asking the store until the window has room,
then admitted again - on the memory store and on a real Redis, with one fake clock driving both."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Limits, Principal
from tenantgate.platform.context import RequestContext
from tenantgate.platform.errors import GatewayError
from tenantgate.platform.limits.hook import Limiter
from tenantgate.platform.limits.known import KnownRefusals, LocallyRefused
from tenantgate.platform.limits.responses import RateLimited
from tenantgate.tenants.limits.guard import GuardedStore
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.policy import LimitPolicy
from tenantgate.tenants.limits.redis import RedisLimitStore
from tenantgate.wire.resp import RespClient
from tests.tenants.test_limit_store_contract import FakeClock

KEY = Principal("key_a", "tg-x", "k", "ten_a", "acme", True, None, Limits(rpm=3), Limits(), None)


@dataclasses.dataclass
class Rig:
    limiter: Limiter
    clock: FakeClock
    calls: list[int]
    in_flight: list[Exchange] = dataclasses.field(default_factory=list)

    async def ask(self, principal: Principal = KEY, text: str = "hi", *, end: bool = True) -> GatewayError | None:
        """One request's admission; ``end=False`` leaves it in flight (an ended request that never reached the
        upstream is refunded its tokens)."""
        exchange = Exchange(ctx=RequestContext("req", principal), operation="chat", path="/v1/chat/completions")
        exchange.model = "gpt-4o-mini"
        exchange.payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        try:
            await self.limiter.admit(exchange)
        except GatewayError as error:
            return error
        finally:
            if end:
                self.limiter.finish(exchange)
            else:
                self.in_flight.append(exchange)  # the limiter knows requests by id(): keep this one alive
        return None


@pytest.fixture(params=["memory", "redis"])
async def rig(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> AsyncIterator[Rig]:
    clock = FakeClock()
    calls: list[int] = []
    memory = MemoryLimitStore(clock=clock)
    primary = None
    if request.param == "redis":
        primary = RedisLimitStore(RespClient.from_url(redis_url), clock=clock, credit=True)
        _count(primary, "admit", calls)
    else:
        _count(memory, "admit_now", calls)
    store = GuardedStore(primary, memory, fail_open=False, retry_seconds=1)
    known = KnownRefusals(clock=lambda: clock.now / 1000)
    yield Rig(Limiter(store, LimitPolicy(prefix=redis_prefix, lease_ms=60_000), known=known), clock, calls)
    if primary is not None:
        await primary.close()
        await primary.client.aclose()
        client = Redis.from_url(redis_url)
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _count(store: Any, method: str, calls: list[int]) -> None:
    original: Callable[..., Any] = getattr(store, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    setattr(store, method, counted)


async def test_a_key_over_its_rpm_is_refused_from_memory_until_the_window_has_room(rig: Rig) -> None:
    for _ in range(3):
        assert await rig.ask() is None
    first = await rig.ask()
    assert isinstance(first, RateLimited)  # the store's own refusal
    asked = len(rig.calls)
    wait_ms = int(first.headers["retry-after-ms"])
    assert 0 < wait_ms <= 61_000

    later = []
    for _ in range(20):
        rig.clock.advance(wait_ms / 40)
        later.append(await rig.ask())
    assert len(rig.calls) == asked  # twenty refusals, not one store call
    assert all(isinstance(error, LocallyRefused) for error in later)
    last = later[-1]
    assert last is not None and last.status == 429
    body = json.loads(last.body())["error"]
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"
    assert body["message"].startswith("Rate limit reached in API key key_a on requests per min (RPM): Limit 3")
    assert last.headers["x-ratelimit-remaining-requests"] == "0"
    left_ms = int(last.headers["retry-after-ms"])
    assert abs(left_ms - wait_ms / 2) <= 2  # the wait shrinks as time passes
    assert body["message"].endswith(f"Please try again in {last.headers['x-ratelimit-reset-requests']}.")
    assert last.headers["retry-after"] == str(-(-left_ms // 1000))

    rig.clock.advance(left_ms + 1)
    assert await rig.ask() is None  # room again: asked the store, admitted
    assert len(rig.calls) == asked + 1
    assert rig.limiter.known is not None and rig.limiter.known.refused == 20


async def test_a_changed_limit_forgets_what_was_known(rig: Rig) -> None:
    for _ in range(4):
        await rig.ask()
    assert isinstance(await rig.ask(), LocallyRefused)
    raised = dataclasses.replace(KEY, key_limits=Limits(rpm=10))
    assert await rig.ask(raised) is None


async def test_a_tenant_over_its_rpm_is_refused_from_memory_for_every_key(rig: Rig) -> None:
    tenant_limited = dataclasses.replace(KEY, key_limits=Limits(), tenant_limits=Limits(rpm=2))
    other_key = dataclasses.replace(tenant_limited, key_id="key_b")
    assert await rig.ask(tenant_limited) is None
    assert await rig.ask(other_key) is None
    assert isinstance(await rig.ask(tenant_limited), RateLimited)
    asked = len(rig.calls)
    refused = await rig.ask(other_key)
    assert isinstance(refused, LocallyRefused) and len(rig.calls) == asked
    assert "in tenant acme (ten_a)" in json.loads(refused.body())["error"]["message"]


async def test_tpm_refusals_keep_asking_the_store(rig: Rig) -> None:
    # A smaller request may fit a TPM window a larger one did not: only request counts are known from memory.
    tokens = dataclasses.replace(KEY, key_limits=Limits(tpm=100))
    long = "word " * 60
    assert await rig.ask(tokens, long, end=False) is None
    refused = await rig.ask(tokens, long)
    assert isinstance(refused, RateLimited) and refused.type == "tokens"
    before = len(rig.calls)
    assert await rig.ask(tokens, "hi", end=False) is None  # a small one still fits
    assert isinstance(await rig.ask(tokens, long), RateLimited)
    assert len(rig.calls) == before + 2


_NAMES = st.text(min_size=1, max_size=40) | st.sampled_from(["@@wait@@", 'a"b\\c', "@@wait@@ and @@wait@@", "\u2028"])


@settings(max_examples=200, deadline=None)
@given(tenant_a=_NAMES, tenant_b=_NAMES, key_a=_NAMES, key_b=_NAMES)
def test_hostile_names_render_a_valid_refusal_and_never_refuse_another_tenant(
    tenant_a: str, tenant_b: str, key_a: str, key_b: str
) -> None:
    # Tenant names are the operator's strings, ids are opaque: whatever they hold, the body rendered once stays
    # OpenAI's JSON with the wait in its place, and what is known of tenant A never refuses tenant B.
    assume(key_a != key_b)
    clock = FakeClock()
    known = KnownRefusals(clock=lambda: clock.now / 1000)
    a = Principal(key_a, "tg-x", "k", "ten_a", tenant_a, True, None, Limits(rpm=5), Limits(rpd=9), None)
    b = Principal(key_b, "tg-y", "k", "ten_b", tenant_b, True, None, Limits(rpm=5), Limits(rpd=9), None)
    checks = LimitPolicy(prefix="p", lease_ms=1000).checks(a, tokens=0, now=0)
    states = MemoryLimitStore(clock=clock).admit_now(checks, "").states
    known.learn(a, [dataclasses.replace(state, used=state.check.limit, retry_ms=1500) for state in states])
    refused = known.check(a)
    assert refused is not None
    body = json.loads(refused.body())["error"]
    assert body["code"] == "rate_limit_exceeded"
    assert body["message"].endswith(f"Please try again in {refused.headers['x-ratelimit-reset-requests']}.")
    assert f"API key {key_a} on requests per min" in body["message"] or f"tenant {tenant_a}" in body["message"]
    assert known.check(b) is None
