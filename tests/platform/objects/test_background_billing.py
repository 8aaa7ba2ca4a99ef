"""A background response is billed once whatever its owner does: deleting it before the gateway saw it finish
settles it first (a response still running cannot be deleted), and while it is queued it holds its worst case
against the month's budget like any request, settled to what it used when it ends. Real Postgres and Redis; the
official SDK as the client."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.conftest import UPSTREAM_KEY
from tests.platform.objects.batching import wait_until
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

PROMPT = "hello there " * 100


def _billed(gateway: Gateway, tenant_id: str) -> list[dict[str, Any]]:
    flush(gateway)
    return [e for e in all_events(gateway) if e["tenant_id"] == tenant_id and e["billable"]]


def _upstream(base_url: str) -> httpx.Client:
    """The operator's view of the upstream (the platform's key), to know what the upstream did."""
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}, timeout=30)


def _me(gateway: Gateway, key: str) -> dict[str, Any]:
    response = httpx.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    budget: dict[str, Any] = response.json()["limits"]["tenant"]["monthly_budget_usd"]
    return budget


def _cost(event: dict[str, Any]) -> Decimal:
    return Decimal(event["cost_usd"])


def test_deleting_a_finished_background_response_before_it_was_settled_still_bills_it(
    objects_gateway: Callable[..., Gateway], fast_upstream: str
) -> None:
    gateway = objects_gateway(object_poll_seconds=3600)  # no poller: only the delete can see it finish
    key = gateway.new_key("bg-delete")
    client = gateway.client(key["key"])
    created = client.responses.create(model="gpt-4o", input=PROMPT, background=True)
    assert created.status == "queued"
    upstream = _upstream(fast_upstream)
    done = wait_until(
        lambda: (r := upstream.get(f"/responses/{created.id}").json())["status"] == "completed" and r,
        what="the upstream to finish it",
    )
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    events = wait_until(lambda: _billed(gateway, key["tenant_id"]), what="its usage")
    assert [(e["model"], e["input_tokens"], e["output_tokens"]) for e in events] == [
        ("gpt-4o", done["usage"]["input_tokens"], done["usage"]["output_tokens"])
    ]
    time.sleep(0.5)
    assert len(_billed(gateway, key["tenant_id"])) == 1


def test_a_background_response_still_running_cannot_be_deleted_until_it_ended(
    objects_gateway: Callable[..., Gateway],
) -> None:
    gateway = objects_gateway(object_poll_seconds=3600)
    key = gateway.new_key("bg-running")
    client = gateway.client(key["key"])
    slow = {"x-dev-token-delay-ms": "100"}  # the dev upstream takes 0.1 s a token
    created = client.responses.create(model="gpt-4o", input=PROMPT, background=True, extra_headers=slow)
    with pytest.raises(openai.ConflictError) as refused:
        client.responses.delete(created.id)
    assert refused.value.code == "response_in_progress"
    assert client.responses.retrieve(created.id).id == created.id  # nothing was deleted
    client.responses.cancel(created.id)
    client.responses.delete(created.id)  # ended (cancelled): settled, then deleted
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_queued_background_responses_hold_their_worst_case_against_the_budget(
    objects_gateway: Callable[..., Gateway],
) -> None:
    gateway = objects_gateway(object_poll_seconds=3600)  # queued as long as nobody looks
    tenant = gateway.create_tenant(f"bg-budget-{time.monotonic_ns()}", monthly_budget_usd="0.025")
    key = gateway.create_key(tenant["id"])
    client = gateway.client(key["key"])
    # Each may cost up to 1,000 output tokens of gpt-4o ($0.01) plus its prompt: two fit the budget, not three.
    admitted = []
    for _ in range(2):
        admitted.append(client.responses.create(model="gpt-4o", input="hi", background=True, max_output_tokens=1000))
    held = _me(gateway, key["key"])
    assert held["spent"] == 0 and 0.02 < held["reserved"] <= 0.0201
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model="gpt-4o", input="hi", background=True, max_output_tokens=1000)
    assert refused.value.code == "insufficient_quota"

    # Settled when they end (here: by their deletes), to what they used; the budget is free again.
    for response in admitted:
        wait_until(lambda r=response: client.responses.retrieve(r.id).status == "completed", what="completion")
        client.responses.delete(response.id)
    events = wait_until(
        lambda: (found := _billed(gateway, tenant["id"])) and len(found) == 2 and found, what="their usage"
    )
    spent = sum((_cost(e) for e in events), Decimal(0))
    assert spent > 0
    settled = wait_until(lambda: (b := _me(gateway, key["key"]))["reserved"] == 0 and b, what="the holds' release")
    assert Decimal(str(settled["spent"])) == pytest.approx(spent, abs=Decimal("1e-9"))
    client.responses.create(model="gpt-4o", input="hi", background=True, max_output_tokens=1000)


def test_a_background_response_retrieved_many_times_is_spent_once(
    objects_gateway: Callable[..., Gateway],
) -> None:
    gateway = objects_gateway(object_poll_seconds=0.5)
    tenant = gateway.create_tenant(f"bg-retrieved-{time.monotonic_ns()}", monthly_budget_usd="1")
    key = gateway.create_key(tenant["id"])
    client = gateway.client(key["key"])
    created = client.responses.create(model="gpt-4o", input=PROMPT, background=True, max_output_tokens=200)
    for _ in range(5):
        wait_until(lambda: client.responses.retrieve(created.id).status == "completed", what="completion")
    events = wait_until(lambda: _billed(gateway, tenant["id"]), what="its usage")
    assert len(events) == 1
    settled = wait_until(lambda: (b := _me(gateway, key["key"]))["reserved"] == 0 and b, what="its settlement")
    time.sleep(1.5)  # the poller has claimed it by now; nothing more is charged
    assert Decimal(str(_me(gateway, key["key"])["spent"])) == pytest.approx(_cost(events[0]), abs=Decimal("1e-9"))
    assert settled["spent"] == _me(gateway, key["key"])["spent"]


def test_a_queued_background_response_still_holds_after_redis_lost_the_counters(
    objects_gateway: Callable[..., Gateway], redis_url: str, redis_prefix: str
) -> None:
    gateway = objects_gateway(object_poll_seconds=3600)
    tenant = gateway.create_tenant(f"bg-lost-{time.monotonic_ns()}", monthly_budget_usd="1")
    key = gateway.create_key(tenant["id"])
    client = gateway.client(key["key"])
    client.responses.create(model="gpt-4o", input="hi", background=True, max_output_tokens=1000)
    held = _me(gateway, key["key"])["reserved"]
    assert 0.01 < held <= 0.0101
    # Redis loses the tenant's month counters (a restart without persistence, an eviction): seeded again from the
    # ledger plus what is still held, the queued response among it.
    lost = redis.Redis.from_url(redis_url)
    names = list(lost.scan_iter(match=f"{redis_prefix}:lim:{{{tenant['id']}}}:*"))
    assert names and lost.delete(*names) == len(names)
    lost.close()
    assert _me(gateway, key["key"])["reserved"] == held


def test_a_background_response_deleted_upstream_past_the_gateway_is_billed_its_worst_case(
    objects_gateway: Callable[..., Gateway], fast_upstream: str
) -> None:
    """A tenant with its own account can delete a response there, out of the gateway's sight: once the poller finds
    it gone it is billed from the worst case its create held (flagged estimated), so deleting cannot make it free nor
    its budget bypassable. Here the operator's view of the upstream deletes it, as such a tenant would."""
    gateway = objects_gateway(object_poll_seconds=0.5)
    tenant = gateway.create_tenant(f"bg-vanished-{time.monotonic_ns()}", monthly_budget_usd="1")
    key = gateway.create_key(tenant["id"])
    client = gateway.client(key["key"])
    slow = {"x-dev-token-delay-ms": "20"}  # long enough for the delete to come before the poller sees it end
    created = client.responses.create(
        model="gpt-4o", input=PROMPT, background=True, max_output_tokens=200, extra_headers=slow
    )
    assert _upstream(fast_upstream).delete(f"/responses/{created.id}").status_code == 200
    events = wait_until(lambda: _billed(gateway, tenant["id"]), what="its estimated usage")
    (event,) = events
    assert (event["model"], event["usage_source"], event["output_tokens"]) == ("gpt-4o", "estimated", 200)
    assert event["input_tokens"] > 0 and _cost(event) > 0
    settled = wait_until(lambda: (b := _me(gateway, key["key"]))["reserved"] == 0 and b, what="its settlement")
    assert Decimal(str(settled["spent"])) == pytest.approx(_cost(event), abs=Decimal("1e-9"))


@pytest.mark.parametrize(
    ("tenant_limits", "key_limits", "cap"),
    [({}, {}, 200), ({}, {"rpm": 10_000}, None), ({"tpm": 10_000_000}, {}, 300)],
    ids=["no-limits", "key-rpm-no-cap", "tenant-tpm"],
)
def test_a_background_response_of_a_tenant_without_quota_or_budget_deleted_upstream_is_billed_its_worst_case(
    objects_gateway: Callable[..., Gateway],
    fast_upstream: str,
    tenant_limits: dict[str, Any],
    key_limits: dict[str, Any],
    cap: int | None,
) -> None:
    """Without a monthly quota or budget nothing is held, but the worst case (its prompt, the most output it allows:
    its cap, else the model's most) is still kept beside the response: deleted upstream past the gateway, it is
    billed from it, flagged estimated, never free."""
    gateway = objects_gateway(object_poll_seconds=0.5)
    tenant = gateway.create_tenant(f"bg-vanished-free-{time.monotonic_ns()}", **tenant_limits)
    key = gateway.create_key(tenant["id"], **key_limits)
    client = gateway.client(key["key"])
    slow = {"x-dev-token-delay-ms": "20"}  # long enough for the delete to come before the poller sees it end
    capped: dict[str, Any] = {} if cap is None else {"max_output_tokens": cap}
    created = client.responses.create(model="gpt-4o", input=PROMPT, background=True, extra_headers=slow, **capped)
    assert _upstream(fast_upstream).delete(f"/responses/{created.id}").status_code == 200
    (event,) = wait_until(lambda: _billed(gateway, tenant["id"]), what="its estimated usage")
    assert (event["model"], event["usage_source"]) == ("gpt-4o", "estimated")
    assert event["output_tokens"] == (cap if cap is not None else 16_384)  # gpt-4o's most output
    assert event["input_tokens"] > 0 and _cost(event) > 0
    time.sleep(1.5)  # three more polls: still billed once
    assert len(_billed(gateway, tenant["id"])) == 1
