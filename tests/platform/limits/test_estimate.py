"""Where the prompt estimate of a request is computed: inline for small bodies, in a worker thread for large ones."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tenantgate import tokens
from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Limits, Principal
from tenantgate.platform.context import RequestContext
from tenantgate.platform.limits import hook

PRINCIPAL = Principal("key_1", "tg-x", "k", "ten_1", "t", True, None, Limits(), Limits(), None)


def _exchange(text: str, body_size: int) -> Exchange:
    exchange = Exchange(ctx=RequestContext("req_1", PRINCIPAL), operation="chat", path="/v1/chat/completions")
    exchange.model = "gpt-4o-mini"
    exchange.payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 7}
    exchange.body_size = body_size
    return exchange


@pytest.mark.parametrize(("body_size", "inline"), [(1_000, True), (32 * 1024, True), (32 * 1024 + 1, False)])
def test_large_bodies_are_tokenised_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, body_size: int, inline: bool
) -> None:
    ran_in: list[threading.Thread] = []
    count = tokens.estimate_prompt_tokens

    def recording(payload: dict[str, Any], model: str | None) -> int:
        ran_in.append(threading.current_thread())
        return count(payload, model)

    monkeypatch.setattr(tokens, "estimate_prompt_tokens", recording)
    exchange = _exchange("Say hello to the gateway", body_size)
    estimate = asyncio.run(hook._estimate(exchange))
    assert estimate == count(exchange.payload or {}, "gpt-4o-mini")
    assert hook.max_output_tokens(exchange.payload or {}) == 7
    assert (ran_in == [threading.main_thread()]) is inline
    assert len(ran_in) == 1
