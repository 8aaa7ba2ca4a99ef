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


def test_a_nul_in_the_model_name_does_not_block_usage_writes(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=postgres_url, upstream_base_url=dev_upstream)
    key = gateway.new_key("nul")
    headers = {"Authorization": f"Bearer {key['key']}"}
    messages = [{"role": "user", "content": "hi"}]
    for model in ("gpt-4o-mini\u0000x", "gpt-4o-mini"):
        response = httpx.post(
            gateway.base_url + "/chat/completions",
            json={"model": model, "messages": messages},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text

    flush(gateway)
    events = all_events(gateway, tenant_id=key["tenant_id"])
    assert sorted(e["model"] for e in events) == ["gpt-4o-mini", "gpt-4o-mini\ufffdx"]
    assert all(e["billable"] and e["output_tokens"] > 0 for e in events)


def test_a_huge_model_name_does_not_block_usage_writes(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str
) -> None:
    # 5,000 characters would overflow the rollups' primary-key index (btree rows are limited to ~2.7 kB).
    gateway = gateway_factory(database_url=postgres_url, upstream_base_url=dev_upstream)
    key = gateway.new_key("huge")
    headers = {"Authorization": f"Bearer {key['key']}"}
    huge = "gpt-4o-mini-" + "x" * 5000
    for model in (huge, "gpt-4o-mini"):
        response = httpx.post(
            gateway.base_url + "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text

    flush(gateway)
    events = all_events(gateway, tenant_id=key["tenant_id"])
    assert sorted(e["model"] for e in events) == ["gpt-4o-mini", huge[:256]]
    assert all(e["billable"] and e["output_tokens"] > 0 for e in events)


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
