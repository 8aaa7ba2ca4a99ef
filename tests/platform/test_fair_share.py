"""Fair share end to end: beside one tenant's flood on a saturated worker, another tenant's request is served next,
and a tenant whose queue is full is told to come back (the official SDK as the client, a slow dev upstream)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate import database
from tenantgate.platform.app import create_app
from tenantgate.platform.serving import uvicorn_options
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.platform.limits.conftest import MESSAGES, tenant_with_key
from tests.support.gateway import Gateway
from tests.support.server import ServedApp

pytestmark = pytest.mark.slow

FLOOD = 12
SLOTS = 2


@pytest.fixture(scope="module")
def saturated(tmp_path_factory: pytest.TempPathFactory, slow_dev_upstream: str) -> Iterator[Gateway]:
    """One worker with two work slots, over a throwaway SQLite database, for the whole module."""
    directory = tmp_path_factory.mktemp("fair")
    url = f"sqlite+aiosqlite:///{directory / 'fair.db'}"
    database.upgrade(url)
    settings = make_settings(
        database_url=url,
        upstream_base_url=slow_dev_upstream,
        spool_dir=directory / "spool",
        work_slots=SLOTS,
        work_slots_shared=SLOTS,  # two slots whether one tenant asks or several (the shared capacity: test_workslots)
        work_slot_upstream_seconds=60,  # the slow upstream's wait holds the slots, so the worker is saturated
        work_queue_per_tenant=FLOOD,
        refusal_delay_seconds=0,
    )
    app = create_app(settings)
    with ServedApp(app, **uvicorn_options(settings)) as served:
        assert served.loop is not None
        yield Gateway(url=served.url, admin_token=ADMIN_TOKEN, settings=settings, runtime=app.runtime, loop=served.loop)


def _waiting(gateway: Gateway) -> int:
    return gateway.runtime.work_slots.waiting()


async def _ask(client: openai.AsyncOpenAI, done: list[float], max_tokens: int = 10) -> None:
    # Tokens of 50 ms each: ten are half a second of upstream time.
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=max_tokens)
    done.append(time.monotonic())


async def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_quiet_tenant_is_answered_while_the_floods_queue_waits(saturated: Gateway) -> None:
    flood_key = tenant_with_key(saturated)["key"]
    quiet_key = tenant_with_key(saturated)["key"]

    async def scenario() -> tuple[int, int, int]:
        flood_done: list[float] = []
        async with saturated.async_client(flood_key, timeout=60) as flood, saturated.async_client(quiet_key) as quiet:
            flooding = [asyncio.create_task(_ask(flood, flood_done)) for _ in range(FLOOD)]
            await _wait_until(lambda: _waiting(saturated) == FLOOD - SLOTS)
            quiet_done: list[float] = []
            await _ask(quiet, quiet_done)
            still_waiting = _waiting(saturated)
            finished_before = len(flood_done)
            await asyncio.gather(*flooding)
            return still_waiting, finished_before, len(flood_done)

    still_waiting, finished_before, flood_total = asyncio.run(scenario())
    # The quiet request took the second slot that freed (the first went to the flood, whose turn had begun when the
    # quiet one arrived), not a place behind the ten flood requests that were waiting: served first come, first
    # served, all twelve flood requests would have finished before it.
    assert finished_before <= SLOTS + 1
    assert still_waiting >= FLOOD - 2 * SLOTS - 1
    assert flood_total == FLOOD  # the flood is served too, all of it
    stats = saturated.runtime.work_slots.stats
    assert stats.granted_after_wait >= FLOOD - SLOTS + 1
    assert saturated.runtime.work_slots.in_use == 0 and _waiting(saturated) == 0


def test_a_full_tenant_queue_answers_429_with_retry_after_and_other_tenants_still_queue(saturated: Gateway) -> None:
    flood_key = tenant_with_key(saturated)["key"]
    other_key = tenant_with_key(saturated)["key"]

    async def scenario() -> tuple[openai.RateLimitError, int]:
        done: list[float] = []
        async with saturated.async_client(flood_key, timeout=60) as flood, saturated.async_client(other_key) as other:
            filling = [asyncio.create_task(_ask(flood, done)) for _ in range(FLOOD + SLOTS)]
            await _wait_until(lambda: _waiting(saturated) == FLOOD)
            with pytest.raises(openai.RateLimitError) as refused:
                await _ask(flood, done)
            other_done: list[float] = []
            await _ask(other, other_done)  # another tenant's queue is its own
            await asyncio.gather(*filling)
            return refused.value, len(done) + len(other_done)

    error, served = asyncio.run(scenario())
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert "are waiting for this gateway worker" in error.message
    assert error.response.headers["retry-after"] == "1"
    assert served == FLOOD + SLOTS + 1


def test_a_waiting_client_that_hangs_up_leaves_the_queue(saturated: Gateway) -> None:
    key = tenant_with_key(saturated)["key"]
    stats = saturated.runtime.work_slots.stats
    left_before = stats.left_queue

    async def scenario() -> None:
        done: list[float] = []
        async with saturated.async_client(key, timeout=60) as client:
            # Two seconds of upstream time each: the slots stay held while the third request waits and gives up.
            holding = [asyncio.create_task(_ask(client, done, max_tokens=40)) for _ in range(SLOTS)]
            await _wait_until(lambda: saturated.runtime.work_slots.in_use == SLOTS)
            async with saturated.async_client(key, timeout=60) as impatient:
                waiting = asyncio.create_task(_ask(impatient, done))
                await _wait_until(lambda: _waiting(saturated) == 1)
                waiting.cancel()  # the client hangs up
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            await _wait_until(lambda: stats.left_queue == left_before + 1)
            assert _waiting(saturated) == 0
            await asyncio.gather(*holding)
        assert len(done) == SLOTS

    asyncio.run(scenario())


def test_the_admin_api_sets_a_plans_weight_and_a_tenants_override(saturated: Gateway) -> None:
    plan = saturated.admin("POST", "/admin/plans", json={"name": "gold", "fair_share_weight": 4})
    assert plan.status_code == 201, plan.text
    assert plan.json()["fair_share_weight"] == 4
    tenant = saturated.create_tenant("weighted", plan_id=plan.json()["id"])
    assert tenant["fair_share_weight"] is None  # inherits the plan's
    changed = saturated.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"fair_share_weight": 7})
    assert changed.status_code == 200 and changed.json()["fair_share_weight"] == 7
    for bad in (0, 1001, "heavy"):
        refused = saturated.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"fair_share_weight": bad})
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "fair_share_weight"


# NUL is refused in any body before it is read (platform/nulguard.py, tested there).
# Lone surrogates are left out: no client can encode them as UTF-8 JSON (the HTTP client itself refuses).
_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_JSON)
def test_any_weight_a_caller_sends_is_stored_as_1_to_1000_or_refused_with_openais_error(
    saturated: Gateway, value: object
) -> None:
    plan = saturated.admin(
        "POST", "/admin/plans", json={"name": f"p-{uuid.uuid4().hex[:10]}", "fair_share_weight": value}
    )
    if plan.status_code == 201:
        stored = plan.json()["fair_share_weight"]
        assert stored is None or (isinstance(stored, int) and 1 <= stored <= 1000)
        # As for every limit field, a number written as a string or a whole float is read as that number.
        assert stored is None if value is None else float(value) == stored  # type: ignore[arg-type]
    else:
        assert plan.status_code == 422, plan.text
        assert plan.json()["error"]["param"] == "fair_share_weight", plan.text


def test_a_slow_upstream_call_passes_its_slot_on(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, slow_dev_upstream: str
) -> None:
    """One slot, four requests of half a second of upstream time each: the slot shares out the worker's own work,
    not the upstream's thinking, so after work_slot_upstream_seconds each passes it on and all four are at the
    upstream at once (held until answered, they would take two seconds one after another)."""
    gateway = gateway_factory(
        database_url=sqlite_url, upstream_base_url=slow_dev_upstream, work_slots=1, work_slot_upstream_seconds=0.05
    )
    key = tenant_with_key(gateway)["key"]

    async def scenario() -> float:
        done: list[float] = []
        async with gateway.async_client(key, timeout=60) as client:
            started = time.monotonic()
            await asyncio.gather(*(_ask(client, done) for _ in range(4)))
            return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    assert elapsed < 1.5, f"the four calls took {elapsed:.2f} s: the slot waited for each upstream answer"
    assert gateway.runtime.work_slots.in_use == 0


def test_tenants_sharing_a_worker_at_one_slot_still_have_all_their_slow_calls_and_streams_at_the_upstream_at_once(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, slow_dev_upstream: str
) -> None:
    """Two tenants, so the worker runs at its shared capacity (one slot, the default); each sends ten half-second
    calls, half of them streamed. Parked on their upstream, they pass the slot on within milliseconds: all twenty
    are at the upstream at once and finish in about one call's time, not ten seconds one after another."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=slow_dev_upstream)
    assert gateway.settings.work_slots_shared == 1
    keys = [tenant_with_key(gateway)["key"] for _ in range(2)]

    async def stream(client: openai.AsyncOpenAI, done: list[float]) -> None:
        events = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=10, stream=True
        )
        async for _ in events:
            pass
        done.append(time.monotonic())

    async def scenario() -> tuple[float, int]:
        done: list[float] = []
        async with gateway.async_client(keys[0], timeout=60) as a, gateway.async_client(keys[1], timeout=60) as b:
            started = time.monotonic()
            calls = [call(client, done) for client in (a, b) for call in (_ask, stream) for _ in range(5)]
            await asyncio.gather(*calls)
            return time.monotonic() - started, len(done)

    elapsed, finished = asyncio.run(scenario())
    assert finished == 20
    assert elapsed < 3, f"twenty half-second calls took {elapsed:.2f} s: slots held them back"
    assert gateway.runtime.work_slots.in_use == 0 and gateway.runtime.work_slots.stats.passed_on > 0
