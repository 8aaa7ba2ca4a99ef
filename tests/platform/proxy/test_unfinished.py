"""Settling a stream that ended without its usage: learned reasoning rates, the upstream's answer, the estimate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tenantgate.core.exchange import Attempt, Exchange
from tenantgate.platform.context import RequestContext
from tenantgate.platform.proxy.sse import StreamScanner
from tenantgate.platform.proxy.unfinished import (
    DEFAULT_REASONING_RATE,
    ReasoningRates,
    UnfinishedStreams,
    UpstreamAccess,
)
from tenantgate.platform.upstream.config import UpstreamConfig
from tenantgate.platform.upstream.paths import is_segment
from tenantgate.platform.upstream.registry import Upstream
from tests.platform.proxy.test_sse_scanner import PRINCIPAL


def _exchange(payload: dict[str, Any], response_id: str | None = None, started: float = 100.0) -> Exchange:
    exchange = Exchange(
        ctx=RequestContext(request_id="req_1", principal=PRINCIPAL), operation="responses", path="/v1/responses"
    )
    exchange.payload = payload
    exchange.model = str(payload.get("model"))
    exchange.stream = True
    exchange.response_id = response_id
    exchange.attempt_log.append(Attempt(upstream="default", started=started))
    return exchange


class _Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self._body = status, body
        self.raw_headers: Iterable[tuple[bytes, bytes]] = ()
        self.headers: dict[str, str] = {}
        self.content_type = "application/json"
        self.released = self.closed = False

    async def read(self) -> bytes:
        return self._body

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


class _Session:
    """Answers GETs from a list, records them."""

    def __init__(self, answers: list[tuple[int, object]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, list[tuple[str, str]]]] = []

    async def request(
        self, method: str, url: str, *, data: object = None, headers: Any = (), allow_redirects: bool = True, **_: Any
    ) -> _Answer:
        self.requests.append((method, url, list(headers)))
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return _Answer(status, orjson.dumps(body))

    async def close(self) -> None:
        return None


def _access(session: _Session) -> UpstreamAccess:
    upstream = Upstream(UpstreamConfig(name="default", base_url="http://upstream.test/v1", api_key="sk-platform"))
    return UpstreamAccess(session, upstream, ("Authorization", "Bearer sk-platform"))  # type: ignore[arg-type]


def _settle(unfinished: UnfinishedStreams, exchange: Exchange, session: _Session | None, cut_at: float) -> None:
    scanner = StreamScanner(exchange, strip_usage=False)
    access = _access(session) if session is not None else None
    asyncio.run(unfinished.settle(exchange, scanner, access, cut_at=cut_at))


def _response(response_id: str, status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "status": status, "model": "o3", "output": [], "usage": usage}


USAGE = {"input_tokens": 12, "output_tokens": 70, "output_tokens_details": {"reasoning_tokens": 64}}


def test_polls_while_in_progress_then_bills_what_the_upstream_reports() -> None:
    session = _Session(
        [(200, _response("resp_1", "in_progress", None))] * 2 + [(200, _response("resp_1", "incomplete", USAGE))]
    )
    exchange = _exchange({"model": "o3", "input": "x"}, "resp_1")
    _settle(UnfinishedStreams(5), exchange, session, cut_at=101.0)
    assert exchange.usage_source == "upstream" and exchange.usage is not None
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens, exchange.usage.reasoning_tokens) == (12, 70, 64)
    assert [(m, u) for m, u, _ in session.requests] == [("GET", "http://upstream.test/v1/responses/resp_1")] * 3
    assert all(headers == [("Authorization", "Bearer sk-platform")] for _, _, headers in session.requests)


def test_an_upstream_that_cannot_say_leaves_the_estimate_with_reasoning() -> None:
    for answer in [(404, {"error": {"message": "not found"}}), (200, _response("resp_other", "completed", USAGE))]:
        exchange = _exchange({"model": "o3", "input": "x"}, "resp_1")
        _settle(UnfinishedStreams(5), exchange, _Session([answer]), cut_at=101.0)
        assert exchange.usage_source == "estimated" and exchange.usage is not None
        assert exchange.usage.reasoning_tokens == DEFAULT_REASONING_RATE  # one second waited, nothing learned


def test_still_in_progress_when_time_is_up_is_estimated() -> None:
    session = _Session([(200, _response("resp_1", "in_progress", None))])
    exchange = _exchange({"model": "o3", "input": "x"}, "resp_1")
    _settle(UnfinishedStreams(0.2), exchange, session, cut_at=101.0)
    assert exchange.usage_source == "estimated" and len(session.requests) >= 2


def test_not_stored_or_disabled_is_never_asked() -> None:
    for unfinished, payload in [
        (UnfinishedStreams(5), {"model": "o3", "input": "x", "store": False}),
        (UnfinishedStreams(0), {"model": "o3", "input": "x"}),
    ]:
        session = _Session([(200, _response("resp_1", "completed", USAGE))])
        exchange = _exchange(payload, "resp_1")
        _settle(unfinished, exchange, session, cut_at=101.0)
        assert session.requests == [] and exchange.usage_source == "estimated"


def test_background_stream_is_billed_once_its_final_usage_is_seen() -> None:
    unfinished = UnfinishedStreams(0.2)
    payload = {"model": "o3", "input": "x", "background": True}
    running = _exchange(payload, "resp_1")
    in_progress = {**_response("resp_1", "in_progress", None), "background": True}
    _settle(unfinished, running, _Session([(200, in_progress)]), cut_at=101.0)
    assert running.usage is None and not running.model_work  # billed when a retrieve shows it finished
    done = _exchange(payload, "resp_1")
    completed = {**_response("resp_1", "completed", USAGE), "background": True}
    _settle(unfinished, done, _Session([(200, completed)]), cut_at=101.0)
    assert done.usage_source == "upstream" and done.model_work and done.event_id is not None


@given(st.text(max_size=300))
def test_only_an_id_of_the_strict_grammar_is_ever_asked_for(response_id: str) -> None:
    session = _Session([(404, {})])
    exchange = _exchange({"model": "gpt-4o-mini", "input": "x"}, response_id)
    _settle(UnfinishedStreams(5), exchange, session, cut_at=101.0)
    if is_segment(response_id):
        # Exactly one path segment below /responses/, which decodes to the id (":" in "0:" is sent as %3A).
        [(_, url, _)] = session.requests
        prefix, _, sent = url.rpartition("/")
        assert prefix == "http://upstream.test/v1/responses" and unquote(sent) == response_id
    else:
        assert session.requests == []
    assert exchange.usage_source == "estimated"


def test_estimate_counts_reasoning_into_output_within_the_requests_cap() -> None:
    rates = ReasoningRates()
    rates.learn("o3", 64, 2.0)  # 32 reasoning tokens per second before the first visible token
    exchange = _exchange({"model": "o3", "input": "x", "store": False})
    _settle(UnfinishedStreams(5, rates), exchange, None, cut_at=101.5)
    assert exchange.usage is not None and exchange.usage.reasoning_tokens == 48
    assert exchange.usage.output_tokens == 48
    capped = _exchange({"model": "o3", "input": "x", "store": False, "max_output_tokens": 20})
    _settle(UnfinishedStreams(5, rates), capped, None, cut_at=101.5)
    assert capped.usage is not None and capped.usage.output_tokens == capped.usage.reasoning_tokens == 20


@given(
    st.lists(
        st.tuples(st.sampled_from(["o3", "o4-mini", "gpt-4o", "x"]) | st.text(max_size=8), st.integers(0, 10**6),
                  st.floats(0, 1e4)),
        max_size=60,
    )
)  # fmt: skip
def test_learned_rates_stay_bounded_and_sane(samples: list[tuple[str, int, float]]) -> None:
    rates = ReasoningRates(max_models=8)
    for seen, (model, tokens, waited) in enumerate(samples, start=1):
        rates.learn(model, tokens, waited)
        assert len(rates._learned) <= 8
        estimate = rates.estimate(1.5, model)
        assert estimate >= 0
        # A model this process learned a rate for (a wait long enough to measure; not forgotten since) and saw
        # never to reason is never billed reasoning. (Not learned: the family's default applies.)
        if model in rates._learned and all(t == 0 for m, t, _ in samples[:seen] if m == model):
            assert estimate == 0


def test_nothing_learned_only_reasoning_families_are_counted() -> None:
    rates = ReasoningRates()
    assert rates.estimate(2.0, "o3-2025-04-16") == 2 * DEFAULT_REASONING_RATE
    assert rates.estimate(0.001, "gpt-5-mini") == 1  # rounded up: a reasoning model never counts none
    assert rates.estimate(2.0, "my-deployment", "o4-mini") == 2 * DEFAULT_REASONING_RATE  # named by the upstream
    assert rates.estimate(2.0, "gpt-4o") == rates.estimate(2.0, "gpt-5-chat-latest") == 0
