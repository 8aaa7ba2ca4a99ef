"""A NUL character in a tenant's model name (or an upstream's answer) must not stop usage from being written.

PostgreSQL text cannot hold U+0000. Before the fix, one request with ``"model": "gpt-4o-mini\\u0000x"`` (which the
upstream happily answered) put an event in the buffer that failed every batch it was in: no usage was stored for
anyone, while the gateway kept serving.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush


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
