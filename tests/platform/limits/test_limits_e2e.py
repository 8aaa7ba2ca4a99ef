"""What a caller of a limited key sees, through the official openai SDK, on the memory store and on Redis."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from decimal import Decimal

import httpx
import openai
import pytest

from tenantgate import tokens
from tenantgate.core.exchange import Exchange, Usage
from tests.platform.limits.conftest import MESSAGES, me, shift_clock, tenant_with_key, wait_for
from tests.support.gateway import Gateway

DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


def _recording_client(
    gateway: Gateway, key: str, max_retries: int
) -> tuple[openai.OpenAI, list[tuple[float, httpx.Response | None]]]:
    """An SDK client that records when each request left and each response arrived."""
    events: list[tuple[float, httpx.Response | None]] = []
    http = httpx.Client(
        event_hooks={
            "request": [lambda request: events.append((time.monotonic(), None))],
            "response": [lambda response: events.append((time.monotonic(), response))],
        },
        timeout=30,
    )
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=max_retries, http_client=http)
    return client, events


def test_openai_rate_limit_headers_on_every_proxied_response(limited: Gateway) -> None:
    key = tenant_with_key(limited, rpm=5, tpm=10_000)["key"]
    client = limited.client(key)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
    headers = raw.headers
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert headers["x-ratelimit-limit-tokens"] == "10000"
    # Admitted on the estimate: the prompt (tiktoken) plus the 100 tokens it may generate.
    assert 10_000 - 100 - 30 < int(headers["x-ratelimit-remaining-tokens"]) < 10_000 - 100
    assert DURATION.match(headers["x-ratelimit-reset-requests"])
    assert DURATION.match(headers["x-ratelimit-reset-tokens"])
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "3"
        assert any(chunk for chunk in streamed.iter_lines())


def test_key_without_limits_gets_no_limit_headers(limited: Gateway) -> None:
    key = tenant_with_key(limited)["key"]
    raw = limited.client(key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert not [h for h in raw.headers if h.startswith("x-ratelimit-")]


def test_over_the_rpm_limit_is_openais_429(limited: Gateway) -> None:
    created = tenant_with_key(limited, rpm=2)
    client = limited.client(created["key"])
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = raised.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded" and error.type == "requests"
    assert f"API key {created['id']}" in error.message
    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in " in error.message
    headers = error.response.headers
    retry_ms = int(headers["retry-after-ms"])
    assert 58_000 < retry_ms <= 61_000
    assert headers["retry-after"] == str(math.ceil(retry_ms / 1000))
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert error.request_id and error.request_id.startswith("req_")


def test_sdk_retry_waits_the_time_we_said(limited: Gateway) -> None:
    key = tenant_with_key(limited, rpm=1)["key"]
    limited.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # Pretend 57.5 s have passed: the slot frees in about 3 s instead of a minute.
    shift_clock(limited, 57_500)
    client, events = _recording_client(limited, key, max_retries=1)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices
    (_, first), (refused_at, refused), (retried_at, _), (_, answered) = events[0], events[1], events[2], events[3]
    assert first is None and refused is not None and answered is not None
    assert refused.status_code == 429 and answered.status_code == 200
    said = int(refused.headers["retry-after-ms"]) / 1000
    assert 1.5 < said < 4.5
    assert said - 0.05 < retried_at - refused_at < said + 0.5


def test_tokens_are_charged_from_actual_usage(limited: Gateway) -> None:
    key = tenant_with_key(limited, tpm=10_000)["key"]
    raw = limited.client(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=2_000
    )
    completion = raw.parse()
    assert completion.usage is not None
    estimate = 10_000 - int(raw.headers["x-ratelimit-remaining-tokens"])
    assert estimate > 2_000 > completion.usage.total_tokens

    def used() -> int:
        return int(me(limited, key)["limits"]["key"]["tokens_per_minute"]["used"])

    assert wait_for(used, completion.usage.total_tokens) == completion.usage.total_tokens


def test_large_prompt_is_estimated_with_the_tokenizer(limited: Gateway) -> None:
    """Bodies over 32 kB are tokenised off the event loop; the estimate is the same tiktoken count."""
    text = " ".join(f"word{i}" for i in range(8_000))  # ~70 kB
    messages = [{"role": "user", "content": text}]
    expected = tokens.estimate_prompt_tokens({"messages": messages}, "gpt-4o-mini") + 100
    assert expected > 8_000
    key = tenant_with_key(limited, tpm=100_000)["key"]
    raw = limited.client(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, max_tokens=100
    )
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 100_000 - expected


def test_heuristic_estimates_count_four_characters_a_token(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "_use_tiktoken", True)  # the estimate mode is per process: restored afterwards
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, token_estimates="heuristic")
    text = "Say hello to the gateway, " * 40  # 1,040 characters, ~240 tokens with tiktoken
    key = tenant_with_key(gateway, tpm=100_000)["key"]
    raw = gateway.client(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=100
    )
    # 1,040 / 4 = 260 tokens of text, 3 for the message, 3 for the reply, 100 it may generate.
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 100_000 - 366


def test_request_larger_than_the_tpm_limit_is_not_retried(limited: Gateway) -> None:
    key = tenant_with_key(limited, tpm=500)["key"]
    client, events = _recording_client(limited, key, max_retries=2)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=1_000)
    assert raised.value.type == "tokens"
    assert "Request too large" in raised.value.message and "Limit 500" in raised.value.message
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len([e for e in events if e[1] is not None]) == 1


def test_monthly_token_quota_runs_out_with_insufficient_quota(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_token_quota": 100})
    client, events = _recording_client(limited, created["key"], max_retries=2)
    answered = 0
    with pytest.raises(openai.RateLimitError) as raised:
        for _ in range(20):
            # Each holds its prompt and up to 10 output tokens while it runs (without max_tokens it would hold the
            # model's 16,384, more than the whole quota).
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
            answered += 1
            time.sleep(0.05)  # let the settlement land
    error = raised.value
    assert 2 <= answered < 20
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert "monthly token quota" in error.message and "Limit 100" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert len([e for e in events if e[1] is not None]) == answered + 1  # the SDK did not retry
    quota = me(limited, created["key"])["limits"]["tenant"]["monthly_tokens"]
    assert quota["limit"] == 100 and quota["used"] > 60


class FixedPrice:
    def __init__(self, usd: str) -> None:
        self.usd = Decimal(usd)
        self.seen: list[Exchange] = []

    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        self.seen.append(exchange)
        return self.usd

    def worst_case_usd(self, exchange: Exchange, usage: Usage, quantity: int | None = None) -> Decimal | None:
        return self.usd


def test_monthly_budget_runs_out_once_costs_are_known(limited: Gateway) -> None:
    """Each request holds its worst case ($0.0006 here) while it runs: a third would take the spend past $0.0015."""
    created = tenant_with_key(limited, {"monthly_budget_usd": "0.0015"})
    client = limited.client(created["key"])
    prices = FixedPrice("0.0006")
    limited.runtime.limiter.cost_estimator = prices
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    def spent() -> float:
        return float(me(limited, created["key"])["limits"]["tenant"]["monthly_budget_usd"]["spent"])

    assert wait_for(spent, 0.0012) == 0.0012
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.code == "insufficient_quota" and "monthly budget" in raised.value.message
    assert [e.model for e in prices.seen] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert all(e.usage is not None and e.usage.total_tokens > 0 for e in prices.seen)


def test_budget_is_charged_at_the_metering_price_table(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_budget_usd": "5"})
    completion = limited.client(created["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.usage is not None
    book = limited.runtime.metering.prices
    price, _ = book.price_for("gpt-4o-mini", tenant_id=created["tenant_id"])
    expected = (
        completion.usage.prompt_tokens * float(price.input) + completion.usage.completion_tokens * float(price.output)
    ) / 1e6
    assert expected > 0
    deadline = time.monotonic() + 5
    spent = 0.0
    while spent == 0 and time.monotonic() < deadline:  # settlement lands in the background
        spent = float(me(limited, created["key"])["limits"]["tenant"]["monthly_budget_usd"]["spent"])
        time.sleep(0.02)
    assert spent == pytest.approx(expected, abs=1e-6)


def test_tenant_limits_cap_the_sum_of_its_keys(limited: Gateway) -> None:
    tenant = limited.create_tenant("shared-capacity-" + str(time.monotonic_ns()), rpm=3)
    keys = [limited.create_key(tenant["id"], rpm=100)["key"] for _ in range(2)]
    outcomes = []
    for key in keys * 2:
        try:
            limited.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            outcomes.append("ok")
        except openai.RateLimitError as exc:
            outcomes.append(exc.message)
    assert outcomes[:3] == ["ok", "ok", "ok"]
    assert f"tenant {tenant['name']} ({tenant['id']})" in outcomes[3]


def test_failed_upstream_call_refunds_tokens_and_frees_the_slot(
    gateway_factory, sqlite_url: str, store_settings: dict[str, object]
) -> None:
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        upstream_connect_timeout_seconds=2,
        **store_settings,
    )
    key = tenant_with_key(gateway, tpm=1_000, max_concurrency=1)["key"]
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
    assert raised.value.status_code == 502

    def state() -> tuple[int, int]:
        limits = me(gateway, key)["limits"]["key"]
        return limits["tokens_per_minute"]["used"], limits["concurrent_requests"]["in_flight"]

    assert wait_for(state, (0, 0)) == (0, 0)


def test_me_shows_the_callers_limits(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"rpm": 50, "monthly_token_quota": 10_000}, rpm=10, rpd=1_000, max_concurrency=4)
    limited.client(created["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    view = me(limited, created["key"])
    assert view["key"]["id"] == created["id"] and view["tenant"]["id"] == created["tenant_id"]
    key_limits, tenant_limits = view["limits"]["key"], view["limits"]["tenant"]
    assert key_limits["requests_per_minute"]["limit"] == 10
    assert key_limits["requests_per_minute"]["remaining"] == 9
    assert key_limits["requests_per_day"]["remaining"] == 999
    assert (
        wait_for(
            lambda: me(limited, created["key"])["limits"]["key"]["concurrent_requests"],
            {"limit": 4, "in_flight": 0, "remaining": 4},
        )["in_flight"]
        == 0
    )
    assert key_limits["tokens_per_minute"]["limit"] is None
    assert tenant_limits["requests_per_minute"] == {
        **tenant_limits["requests_per_minute"],
        "limit": 50,
        "used": 1,
        "remaining": 49,
    }
    assert tenant_limits["monthly_tokens"]["limit"] == 10_000
    assert tenant_limits["monthly_tokens"]["resets_at"].endswith("-01T00:00:00Z")
    # Reading the limits costs nothing.
    assert me(limited, created["key"])["limits"]["key"]["requests_per_minute"]["remaining"] == 9


def test_me_needs_a_key(limited: Gateway) -> None:
    response = httpx.get(limited.base_url + "/me")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_admin_reads_any_keys_limits(limited: Gateway) -> None:
    created = tenant_with_key(limited, rpm=7)
    limited.client(created["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    response = limited.admin("GET", f"/admin/keys/{created['id']}/limits")
    assert response.status_code == 200
    body = response.json()
    assert body["key"]["id"] == created["id"] and body["key"]["status"] == "active"
    assert body["limits"]["key"]["requests_per_minute"]["remaining"] == 6
    assert limited.admin("GET", "/admin/keys/key_nope/limits").status_code == 404
    anonymous = httpx.get(limited.url + f"/admin/keys/{created['id']}/limits")
    assert anonymous.status_code == 401


def test_input_token_counts_spend_no_tokens_of_a_quota(limited: Gateway) -> None:
    """Counting a request's input tokens does no model work: the month's token quota is untouched however often
    it is asked, while a real request of the same input spends it."""
    created = tenant_with_key(limited, {"monthly_token_quota": 100})
    client = limited.client(created["key"], max_retries=0)
    long_input = "count these words " * 200  # far more tokens than the whole quota
    for _ in range(5):
        assert client.responses.input_tokens.count(model="gpt-4o-mini", input=long_input).input_tokens > 100
    time.sleep(0.2)  # let any settlement land
    assert me(limited, created["key"])["limits"]["tenant"]["monthly_tokens"]["used"] == 0
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o-mini", input=long_input, max_output_tokens=16)
