"""A NUL character in a tenant's model name (or an upstream's answer) must not stop usage from being written.

PostgreSQL text cannot hold U+0000. Before the fix, one request with ``"model": "gpt-4o-mini\\u0000x"`` (which the
upstream happily answered) put an event in the buffer that failed every batch it was in: no usage was stored for
anyone, while the gateway kept serving. Events no guard foresaw (an upstream's absurd token count) are set aside
in the spool's dead-letter file instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.prometheus import scrape
from tests.support.scripted import ScriptedUpstream, chat_completion, json_answer

MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_caller_poison_model_name_is_refused_before_it_reaches_the_upstream_or_the_ledger(
    gateway_factory: Callable[..., Gateway], database_url: str
) -> None:
    """A NUL or a 5,000-character model name from the caller is a 400 at the door (routes.py), so it never reaches
    the upstream nor the usage buffer; the next request is served and written as usual."""
    with ScriptedUpstream() as upstream:
        upstream.push(json_answer(200, chat_completion("ok")))
        gateway = gateway_factory(database_url=database_url, upstream_base_url=upstream.base_url)
        key = gateway.new_key("poison")
        headers = {"Authorization": f"Bearer {key['key']}"}
        for model in ("gpt-4o-mini\u0000x", "gpt-4o-mini-" + "x" * 5000):
            response = httpx.post(
                gateway.base_url + "/chat/completions",
                json={"model": model, "messages": MESSAGES},
                headers=headers,
                timeout=30,
            )
            assert response.status_code == 400, response.text
            assert (response.json()["error"]["param"], response.json()["error"]["code"]) == ("model", "invalid_model")
        served = gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert served.choices[0].message.content == "ok"
        flush(gateway)
    events = all_events(gateway, tenant_id=key["tenant_id"])
    assert [(e["model"], e["billable"]) for e in events if e["billable"]] == [("gpt-4o-mini", True)]


def test_an_upstream_answering_with_a_poison_model_name_does_not_block_usage_writes(
    gateway_factory: Callable[..., Gateway], postgres_url: str
) -> None:
    """PostgreSQL text cannot hold U+0000 and a 5,000-character name would overflow the rollups' primary-key index
    (btree rows are limited to ~2.7 kB): an upstream naming such a model in its answer must not fail the batch its
    event is written in."""
    huge = "gpt-4o-mini-" + "x" * 5000
    with ScriptedUpstream() as upstream:
        for model in ("gpt-4o-mini\u0000x", huge, "gpt-4o-mini"):
            upstream.push(json_answer(200, chat_completion("hi", model=model)))
        gateway = gateway_factory(database_url=postgres_url, upstream_base_url=upstream.base_url)
        key = gateway.new_key("poison-answer")
        client = gateway.client(key["key"])
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        flush(gateway)
    events = all_events(gateway, tenant_id=key["tenant_id"])
    assert sorted(e["response_model"] for e in events) == sorted(["gpt-4o-mini", "gpt-4o-mini\ufffdx", huge[:256]])
    assert len(events) == 3 and all(e["billable"] and e["output_tokens"] == 2 for e in events)


def test_an_upstream_reporting_an_absurd_token_count_does_not_block_usage_writes(
    gateway_factory: Callable[..., Gateway], database_url: str
) -> None:
    # 2**61 output tokens pass the hook's sanity cap, but their cost in nano-USD does not fit any bigint column.
    absurd = chat_completion("absurd")
    absurd["usage"] = {"prompt_tokens": 5, "completion_tokens": 2**61, "total_tokens": 2**61 + 5}
    with ScriptedUpstream() as upstream:
        upstream.push(json_answer(200, absurd))
        gateway = gateway_factory(database_url=database_url, upstream_base_url=upstream.base_url)
        key = gateway.new_key("absurd")
        client = gateway.client(key["key"])
        replies = [
            client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES) for _ in "ab"
        ]
        flush(gateway)

    request_ids = [reply.headers["x-request-id"] for reply in replies]
    events = all_events(gateway, tenant_id=key["tenant_id"])
    assert [(e["request_id"], e["output_tokens"]) for e in events] == [(request_ids[1], 2)]
    records = (gateway.settings.spool_dir / "rejected-events.jsonl").read_text().splitlines()
    assert [json.loads(json.loads(r)["line"])["request_id"] for r in records] == [request_ids[0]]
    assert scrape(gateway.url).total("tenantgate_metering_rejected_events_total") == 1
