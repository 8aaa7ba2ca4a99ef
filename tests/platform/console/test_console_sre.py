"""The SRE view's JSON (/console/api/series and /overview) says what happened, and whose doing it was: the
gateway's limits apart from an upstream's 429s, the console's own requests apart from the gateway's traffic."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.support.gateway import Gateway

MESSAGES: Any = [{"role": "user", "content": "sre view"}]
UPSTREAM_429 = {"x-dev-fail": "429", "x-dev-retry-after-ms": "1"}


def _sample(gateway: Gateway) -> None:
    """Close a history frame now instead of waiting for the next 10 s boundary."""

    async def sample() -> None:
        gateway.runtime.telemetry.sample_history()

    asyncio.run_coroutine_threadsafe(sample(), gateway.loop).result(5)


def _tenant_row(series: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    return next(row for row in series["traffic"]["totals"]["tenants"] if row["tenant"] == tenant_id)


def test_upstream_429s_are_counted_apart_from_the_gateways_limits(console_gateway: Gateway) -> None:
    gateway = console_gateway
    suffix = uuid.uuid4().hex[:6]
    limited = gateway.new_key(f"sre-limited-{suffix}")
    gateway.admin("PATCH", f"/admin/tenants/{limited['tenant_id']}", json={"rpm": 1})
    throttled = gateway.new_key(f"sre-throttled-{suffix}")
    refused = gateway.client(limited["key"], max_retries=0)
    refused.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            refused.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):  # the upstream's own 429, after the gateway's retries
        gateway.client(throttled["key"], max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=UPSTREAM_429
        )
    _sample(gateway)

    series = gateway.admin("GET", "/console/api/series", params={"window": "15m"}).json()
    row = _tenant_row(series, limited["tenant_id"])
    assert (row["429"], row["429_limits"], row["429_upstream"]) == (2, 2, 0)
    row = _tenant_row(series, throttled["tenant_id"])
    assert (row["429"], row["429_limits"], row["429_upstream"]) == (1, 0, 1)
    totals = series["traffic"]["totals"]
    assert totals["429"] == totals["429_limits"] + totals["429_upstream"] and totals["429_upstream"] >= 1
    assert totals["rate_limited_ratio"] == round(totals["429"] / totals["requests"], 6)  # every 429 answered
    per_second = series["traffic"]["requests_per_second"]
    assert sum(v or 0 for v in per_second["429_upstream"]) > 0 and sum(v or 0 for v in per_second["429_limits"]) > 0

    # Narrowed to one tenant the split holds; narrowed by model the limiter cannot say, so the 429s stay whole.
    one = gateway.admin("GET", "/console/api/series", params={"window": "15m", "tenant": throttled["tenant_id"]})
    assert one.json()["traffic"]["totals"]["429_upstream"] == 1
    by_model = gateway.admin("GET", "/console/api/series", params={"window": "15m", "model": "gpt-4o-mini"}).json()
    assert by_model["traffic"]["totals"]["429_limits"] is None
    assert "429_limits" not in by_model["traffic"]["requests_per_second"]


def test_in_flight_counts_the_gateways_requests_not_the_consoles_own(console_gateway: Gateway) -> None:
    gateway = console_gateway
    overview = gateway.admin("GET", "/console/api/overview").json()
    assert overview["in_flight"] == 0  # the overview's own request (and the series polled with it) left out

    key = gateway.new_key(f"sre-inflight-{uuid.uuid4().hex[:6]}")
    slow = {"x-dev-first-byte-delay-ms": "1500"}
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(
            gateway.client(key["key"]).chat.completions.create,
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers=slow,
        )
        seen = []
        while not call.done() and len(seen) < 100:
            seen.append(gateway.admin("GET", "/console/api/overview").json()["in_flight"])
            time.sleep(0.01)
        call.result()
    assert 1 in seen and max(seen) == 1


def test_auth_refusals_are_not_listed_as_unmatched_routes(console_gateway: Gateway) -> None:
    gateway = console_gateway
    revoked = gateway.new_key(f"sre-revoked-{uuid.uuid4().hex[:6]}")
    suspended = gateway.new_key(f"sre-suspended-{uuid.uuid4().hex[:6]}")
    assert gateway.admin("POST", f"/admin/keys/{revoked['id']}/revoke").status_code == 200
    assert gateway.admin("POST", f"/admin/tenants/{suspended['tenant_id']}/suspend").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        gateway.client(revoked["key"], max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(suspended["key"], max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert gateway.admin("GET", "/no/such/route").status_code == 404

    routes = gateway.admin("GET", "/console/api/overview").json()["routes"]
    statuses: dict[str, set[str]] = {}
    for row in routes:
        statuses.setdefault(row["route"], set()).add(row["status"])
    assert "404" in statuses["(unmatched)"] and statuses["(unmatched)"] <= {"404", "405"}
    assert {"401", "403"} <= statuses["(refused before routing)"]


def test_time_spent_waiting_is_charted_apart_from_the_gateways_work(console_gateway: Gateway) -> None:
    gateway = console_gateway
    key = gateway.new_key(f"sre-waiting-{uuid.uuid4().hex[:6]}")
    with pytest.raises(openai.RateLimitError):  # the upstream asks for 300 ms between attempts: the gateway waits
        gateway.client(key["key"]).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={**UPSTREAM_429, "x-dev-retry-after-ms": "300"}
        )
    _sample(gateway)

    parts = gateway.admin("GET", "/console/api/series", params={"window": "15m"}).json()["traffic"]["time_seconds"]
    assert set(parts) == {"gateway", "upstream", "waiting"}
    waited = [value for value in parts["waiting"]["p95"] if value is not None]
    assert waited and max(waited) >= 0.25  # the backoff, not counted as the gateway's own work
    gateway_p95 = [value for value in parts["gateway"]["p95"] if value is not None]
    assert gateway_p95 and max(gateway_p95) < 0.25
