"""A key known to be over its RPM is refused before its body is read - and the connection stays sound.

The refusal is sent before the request's body is read or parsed, so a body the gateway would otherwise reject (not
JSON, no model) still gets the 429, and what the body holds - even bytes shaped like another HTTP request - is never
taken for a request on the kept-alive connection.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN
from tests.platform.limits.conftest import MESSAGES, tenant_with_key
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

CHAT = "/v1/chat/completions"


@pytest.fixture
def over_limit(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str, store_settings: dict[str, Any]
) -> Iterator[tuple[Gateway, str]]:
    # No back-pressure delay: each generated example would wait for it, and it is not what is tested here.
    gateway = gateway_factory(
        database_url=sqlite_url, upstream_base_url=dev_upstream, refusal_delay_seconds=0, **store_settings
    )
    key = tenant_with_key(gateway, rpm=1)["key"]
    client = gateway.client(key, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # the store's refusal: now known
    yield gateway, key


def _connection(gateway: Gateway) -> http.client.HTTPConnection:
    parts = urlsplit(gateway.url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def _smuggled(path: str, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 2\r\n\r\n{{}}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    ).encode()


def _random_body(seed: int, kib: int) -> bytes:
    return random.Random(seed).randbytes(kib * 1024)


_BODIES = (
    st.binary(max_size=4096)
    | st.text(max_size=2000).map(str.encode)
    | st.sampled_from(
        [b"{", b"[]", b'{"model": 5}', json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()]
    )
    | st.builds(_smuggled, st.sampled_from([CHAT, "/v1/embeddings", "/v1/models"]), st.just("tg-unknown"))
    # Large bodies from a seed and a size: Hypothesis drawing 300 KB itself costs more than the whole request.
    | st.builds(_random_body, st.integers(0, 2**32 - 1), st.integers(64, 300))
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES, chunked=st.booleans(), path=st.sampled_from([CHAT, "/v1/embeddings", "/v1/responses"]))
def test_a_known_refusal_ignores_the_body_and_keeps_the_connection_sound(
    over_limit: tuple[Gateway, str], body: bytes, chunked: bool, path: str
) -> None:
    gateway, key = over_limit
    connection = _connection(gateway)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if chunked:
            pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
            connection.request("POST", path, body=iter(pieces), headers=headers, encode_chunked=True)
        else:
            connection.request("POST", path, body=body, headers=headers)
        refused = connection.getresponse()
        answer = json.loads(refused.read())
        assert refused.status == 429, answer
        assert answer["error"]["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after-ms"]) > 0
        # The next request on the same connection gets its own answer, not one to anything the body held.
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
        listed = connection.getresponse()
        models = json.loads(listed.read())
        assert listed.status == 200 and models["object"] == "list", models
    finally:
        connection.close()


def test_refused_before_the_body_is_counted_as_a_refusal_from_memory(over_limit: tuple[Gateway, str]) -> None:
    gateway, key = over_limit
    known = gateway.runtime.limiter.known
    assert known is not None
    before = known.refused
    connection = _connection(gateway)
    try:
        for _ in range(3):
            connection.request("POST", CHAT, body=b"not json", headers={"Authorization": f"Bearer {key}"})
            response = connection.getresponse()
            response.read()
            assert response.status == 429  # not the 400 an unparsable body gets: the body was never parsed
    finally:
        connection.close()
    assert known.refused == before + 3


def test_a_flood_of_refusals_from_memory_is_one_ledger_row_per_key_a_second_and_every_one_a_metric(
    over_limit: tuple[Gateway, str],
) -> None:
    """Hammering past its RPM, a key is refused from memory hundreds of times; the ledger keeps one of those refusals
    a second (not billable, as every refusal), so a flood cannot fill the database with them, while the requests
    metric counts every one."""
    gateway, key = over_limit
    client = gateway.client(key, max_retries=0)
    started = time.monotonic()
    for _ in range(200):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    seconds = time.monotonic() - started
    flush(gateway)
    events = [e for e in all_events(gateway) if e["status"] == 429]
    # The store's refusal (the fixture's second request) and at most one from memory per second that passed.
    assert 2 <= len(events) <= 1 + int(seconds) + 2, (len(events), seconds)
    assert not any(e["billable"] for e in events)
    metrics = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    refused = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("tenantgate_proxy_requests_total{") and 'status_class="429"' in line
    )
    assert refused >= 201
