"""Requests in flight: the limit is named in the 429, and slots come back however a request ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.platform.limits.conftest import MESSAGES, me, tenant_with_key, wait_for
from tests.support.gateway import Gateway


@pytest.fixture
def slow(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, slow_dev_upstream: str, store_settings: dict[str, Any]
) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=slow_dev_upstream, **store_settings)


def _in_flight(gateway: Gateway, key: str) -> int:
    return int(me(gateway, key)["limits"]["key"]["concurrent_requests"]["in_flight"])


def _stream_in_background(gateway: Gateway, key: str, started: threading.Event, stop_early: bool) -> threading.Thread:
    def run() -> None:
        with httpx.stream(
            "POST",
            gateway.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
            timeout=30,
        ) as response:
            for _ in response.iter_raw():
                started.set()
                if stop_early:
                    return  # hang up mid-stream

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread


@pytest.mark.parametrize("stop_early", [False, True], ids=["completed", "client-hung-up"])
def test_concurrency_limit_is_named_and_the_slot_comes_back(slow: Gateway, stop_early: bool) -> None:
    key = tenant_with_key(slow, max_concurrency=1)["key"]
    thread = _stream_in_background(slow, key, threading.Event(), stop_early)
    if not stop_early:
        with pytest.raises(openai.RateLimitError) as raised:
            slow.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raised.value.type == "requests" and raised.value.code == "rate_limit_exceeded"
        assert "Concurrency limit reached" in raised.value.message
        assert "Limit 1, In flight 1, Requested 1" in raised.value.message
        assert raised.value.response.headers["retry-after"] == "1"
    thread.join(30)
    assert wait_for(lambda: _in_flight(slow, key), 0) == 0
    assert slow.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=2).choices
