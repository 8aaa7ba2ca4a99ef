"""Both upstream HTTP clients (TENANTGATE_UPSTREAM_HTTP_CLIENT) serve the same answers through the openai SDK."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

MESSAGES = [{"role": "user", "content": "Say hello to the gateway"}]


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
def test_plain_streamed_and_listing_requests(
    client: str, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, upstream_http_client=client)
    tenant = gateway.create_tenant(f"client-{client}")
    key = gateway.create_key(tenant["id"])["key"]
    sdk = gateway.client(key)
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert "Say hello to the gateway" in (completion.choices[0].message.content or "")
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("This is the tenantgate")
    assert [m.id for m in sdk.models.list()]  # GET through the same client
    flush(gateway)
    events = all_events(gateway, tenant_id=tenant["id"])
    assert sorted(e["stream"] for e in events) == [False, True]
    assert all(e["usage_source"] == "upstream" and e["output_tokens"] > 0 for e in events)
