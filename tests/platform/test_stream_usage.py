"""Usage is observed for every answer; the usage chunk the gateway asked for is hidden unless the client asked."""

from __future__ import annotations

import time

import httpx
import pytest

from tenantgate.platform.proxy.hooks import Hooks
from tests.support.gateway import Gateway
from tests.support.hooks import RecordingHook

MESSAGES = [{"role": "user", "content": "count my tokens please"}]


@pytest.fixture
def recorded(gateway: Gateway) -> RecordingHook:
    hook = RecordingHook()
    gateway.runtime.proxy.hooks = Hooks([hook])
    return hook


def _wait_finished(hook: RecordingHook, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(hook.finished) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_non_streamed_usage_is_recorded(gateway: Gateway, recorded: RecordingHook) -> None:
    key = gateway.new_key()["key"]
    completion = gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    _wait_finished(recorded, 1)
    (exchange,) = recorded.settled
    assert completion.usage is not None and exchange.usage is not None
    assert exchange.usage.input_tokens == completion.usage.prompt_tokens
    assert exchange.usage.output_tokens == completion.usage.completion_tokens
    assert exchange.usage_source == "upstream"
    assert exchange.response_id == completion.id
    assert exchange.finish_reasons == ["stop"]
    assert exchange.status == 200 and not exchange.stream


def test_stream_without_include_usage_hides_the_usage_chunk(gateway: Gateway, recorded: RecordingHook) -> None:
    key = gateway.new_key()["key"]
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    ) as response:
        raw = b"".join(response.iter_bytes())
    assert b'"usage"' not in raw
    assert raw.rstrip().endswith(b"data: [DONE]")
    _wait_finished(recorded, 1)
    (exchange,) = recorded.settled
    assert exchange.usage is not None and exchange.usage.output_tokens > 0
    assert exchange.usage_source == "upstream"
    assert exchange.stream and exchange.finish_reasons == ["stop"]


def test_stream_with_include_usage_keeps_it(gateway: Gateway, recorded: RecordingHook) -> None:
    key = gateway.new_key()["key"]
    stream = gateway.client(key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    _wait_finished(recorded, 1)
    (exchange,) = recorded.settled
    assert exchange.usage is not None
    assert exchange.usage.output_tokens == chunks[-1].usage.completion_tokens


def test_client_disconnect_mid_stream_is_estimated(gateway_factory, database_url: str, slow_dev_upstream: str) -> None:
    gateway = gateway_factory(database_url=database_url, upstream_base_url=slow_dev_upstream)
    hook = RecordingHook()
    gateway.runtime.proxy.hooks = Hooks([hook])
    key = gateway.new_key()["key"]
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    ) as response:
        for chunk in response.iter_raw():
            if b'"content":"This"' in chunk:
                break
    _wait_finished(hook, 1)
    (exchange,) = hook.settled
    assert exchange.client_disconnected
    assert exchange.usage_source == "estimated"
    assert exchange.usage is not None and exchange.usage.input_tokens > 0 and exchange.usage.output_tokens >= 1
