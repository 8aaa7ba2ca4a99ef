"""How the gateway asks an upstream for the usage of a Responses stream that broke off, seen from the upstream.

A scripted upstream breaks the stream, then answers the gateway's retrieves: the request is a GET of the route
template's path with the platform's credentials and nothing the caller sent; an answer still in progress is polled;
an upstream that cannot say leaves the estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.scripted import Answer, ScriptedUpstream, json_answer, sse_answer

USAGE = {"input_tokens": 21, "output_tokens": 90, "total_tokens": 111,
         "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 80}}  # fmt: skip


def _event(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def _response(response_id: str, status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "created_at": 1, "status": status, "model": "o3",
            "output": [], "usage": usage, "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}  # fmt: skip


def _broken_stream(response_id: str) -> Answer:
    """response.created and one text delta, then the connection drops."""
    return sse_answer(
        [
            _event("response.created", sequence_number=0, response=_response(response_id, "in_progress")),
            _event("response.output_text.delta", sequence_number=1, item_id="msg_1", delta="Hello there"),
        ],
        complete=False,
    )


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], sqlite_url: str, scripted: ScriptedUpstream) -> Gateway:
    return gateway_factory(
        database_url=sqlite_url, upstream_base_url=scripted.base_url, unfinished_stream_retrieve_seconds=1
    )


def _stream_until_it_breaks(gateway: Gateway, key: str) -> None:
    client = gateway.client(key, max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.responses.create(
            model="o3", input="hi", stream=True, extra_headers={"x-caller-note": "mine", "openai-beta": "x"}
        ):
            pass


def _event_of(gateway: Gateway, tenant_id: str) -> dict[str, Any]:
    flush(gateway)
    (event,) = all_events(gateway, tenant_id=tenant_id)
    return event


def test_in_progress_is_polled_and_the_upstreams_usage_billed(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    created = gateway.new_key()
    scripted.push(
        _broken_stream("resp_cut1"),
        json_answer(200, _response("resp_cut1", "in_progress")),
        json_answer(200, _response("resp_cut1", "incomplete", USAGE)),
    )
    _stream_until_it_breaks(gateway, created["key"])

    event = _event_of(gateway, created["tenant_id"])
    assert event["usage_source"] == "upstream" and event["billable"]
    assert (event["input_tokens"], event["output_tokens"], event["reasoning_tokens"]) == (21, 90, 80)
    create, *retrieves = scripted.requests
    assert create.headers["x-caller-note"] == "mine"
    assert len(retrieves) == 2
    for retrieve in retrieves:
        assert (retrieve.method, retrieve.target, retrieve.body) == ("GET", "/v1/responses/resp_cut1", b"")
        assert retrieve.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert "x-caller-note" not in retrieve.headers and "openai-beta" not in retrieve.headers


@pytest.mark.parametrize(
    "answers",
    [
        [json_answer(404, {"error": {"message": "No response found", "type": "invalid_request_error"}})],
        [json_answer(200, _response("resp_cut1", "in_progress"))] * 30,  # still running when time is up (1 s)
    ],
    ids=["not_found", "in_progress_too_long"],
)
def test_an_upstream_that_cannot_say_leaves_an_estimate_with_reasoning(
    gateway: Gateway, scripted: ScriptedUpstream, answers: list[Answer]
) -> None:
    created = gateway.new_key()
    scripted.push(_broken_stream("resp_cut1"), *answers)
    _stream_until_it_breaks(gateway, created["key"])

    event = _event_of(gateway, created["tenant_id"])
    assert event["usage_source"] == "estimated" and event["billable"]
    assert 0 < event["reasoning_tokens"] < event["output_tokens"]  # o3 reasons, and "Hello there" was delivered


def test_an_id_no_route_could_name_is_never_asked_for(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    created = gateway.new_key()
    scripted.push(_broken_stream("../admin?x=1"))
    _stream_until_it_breaks(gateway, created["key"])

    event = _event_of(gateway, created["tenant_id"])
    assert event["usage_source"] == "estimated"
    assert len(scripted.requests) == 1
