"""A tenant's own base URL with its own upstream key (BYOK), and the SSRF guard on where such URLs may point."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tenantgate.tenants.models import TenantUpstreamKey
from tests.support.dns import TableResolver
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.scripted import ScriptedUpstream, json_answer

MESSAGES = [{"role": "user", "content": "hi"}]
TENANT_KEY = "sk-tenant-own-" + uuid.uuid4().hex


@pytest.fixture
def upstream_a() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream_b() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def tenant_endpoint() -> Iterator[ScriptedUpstream]:
    """The tenant's own OpenAI-compatible endpoint (on loopback, which only an operator allowlist makes reachable)."""
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def start(
    gateway_factory: Callable[..., Gateway],
    tmp_path: Path,
    upstream_a: ScriptedUpstream,
    upstream_b: ScriptedUpstream,
) -> Callable[..., tuple[Gateway, TableResolver]]:
    """A gateway routing to the operator's upstreams a (OpenAI-compatible) and b (Azure), with a table resolver."""
    config = tmp_path / "tenantgate.yaml"
    config.write_text(
        f"""
upstreams:
  - {{name: a, base_url: "{upstream_a.base_url}", api_key: sk-key-of-a, max_retries: 0}}
  - {{name: b, kind: azure, base_url: "{upstream_b.base_url[:-3]}", api_key: sk-key-of-b, api_version: "2024-10-21"}}
models:
  - name: gpt-4o-mini
    aliases: [fast]
    deployments: [{{upstream: a, model: a-mini}}]
  - name: only-b
    deployments: [{{upstream: b}}]
default_upstream: null
"""
    )

    def make(database_url: str, **settings: Any) -> tuple[Gateway, TableResolver]:
        gateway = gateway_factory(database_url=database_url, config_file=config, **settings)
        resolver = TableResolver()
        gateway.runtime.upstream_guard.resolver = resolver
        return gateway, resolver

    return make


def _put(gateway: Gateway, tenant_id: str, upstream: str, **body: Any) -> Any:
    return gateway.admin("PUT", f"/admin/tenants/{tenant_id}/upstream-keys/{upstream}", json=body)


def _listing(gateway: Gateway, tenant_id: str) -> list[dict[str, Any]]:
    response = gateway.admin("GET", f"/admin/tenants/{tenant_id}/upstream-keys")
    assert response.status_code == 200, response.text
    listing: list[dict[str, Any]] = response.json()
    return listing


# Looked up with the machine's own resolver (the loop's getaddrinfo); every other name with the table.
SYSTEM_DNS = {"https://localhost/v1", "https://2130706433/v1"}
REFUSED = [
    ("http://127.0.0.1/v1", "must use https"),
    ("http://localhost/v1", "must use https"),
    ("https://169.254.169.254/latest", "link-local"),
    ("https://10.0.0.5/v1", "private"),
    ("https://[::1]/v1", "loopback"),
    ("https://[::ffff:169.254.169.254]/v1", "link-local"),
    ("https://user:pw@api.tenant.example/v1", "credentials"),
    ("https://localhost/v1", "'localhost' resolves to 127.0.0.1"),
    ("https://2130706433/v1", "loopback"),  # 127.0.0.1 written as one number
    ("https://inside.example/v1", "private"),  # the table resolver: 192.168.7.7
    ("https://mixed.example/v1", "private"),  # one public and one private address
    ("https://nowhere.example/v1", "could not be resolved"),
    ("https://api.tenant.example/v1?api-version=1", "query"),
]


def test_internal_base_urls_are_refused_and_nothing_is_stored(start, sqlite_url: str) -> None:
    gateway, resolver = start(sqlite_url)
    resolver.table.update({"inside.example": ["192.168.7.7"], "mixed.example": ["8.8.8.8", "10.1.2.3"]})
    system = _system_resolver(gateway)
    tenant = gateway.create_tenant(f"ssrf-{uuid.uuid4().hex[:8]}")
    for base_url, reason in REFUSED:
        gateway.runtime.upstream_guard.resolver = system if base_url in SYSTEM_DNS else resolver
        response = _put(gateway, tenant["id"], "a", api_key=TENANT_KEY, base_url=base_url)
        assert response.status_code == 400, (base_url, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_base_url", base_url
        assert error["param"] == "base_url" and reason in error["message"], (base_url, error["message"])
        assert TENANT_KEY not in response.text
    assert _listing(gateway, tenant["id"]) == []


def _system_resolver(gateway: Gateway) -> Any:
    """aiohttp's threaded resolver (the loop's getaddrinfo), made on the server's loop."""
    import aiohttp

    async def make() -> aiohttp.ThreadedResolver:
        return aiohttp.ThreadedResolver()

    return asyncio.run_coroutine_threadsafe(make(), gateway.loop).result(10)


def test_public_base_urls_are_stored_and_listed_without_the_key(start, database_url: str) -> None:
    gateway, resolver = start(database_url)
    tenant = gateway.create_tenant(f"byok-{uuid.uuid4().hex[:8]}")

    # A literal public address needs no DNS: the table is empty, every lookup would fail.
    literal = _put(gateway, tenant["id"], "a", api_key=TENANT_KEY, base_url="https://8.8.8.8/v1/")
    assert literal.status_code == 200, literal.text
    assert literal.json()["base_url"] == "https://8.8.8.8/v1" and resolver.asked == []

    resolver.table["my-resource.openai.azure.com"] = ["20.61.1.2", "2603:1020::5"]
    named = _put(gateway, tenant["id"], "b", api_key=TENANT_KEY, base_url="https://my-resource.openai.azure.com")
    assert named.status_code == 200, named.text
    assert resolver.asked == ["my-resource.openai.azure.com"]

    listing = _listing(gateway, tenant["id"])
    assert {row["upstream"]: row["base_url"] for row in listing} == {
        "a": "https://8.8.8.8/v1",
        "b": "https://my-resource.openai.azure.com",
    }
    assert TENANT_KEY not in str(listing)

    # PUT replaces the record: without base_url the tenant's key goes to the configured endpoint again.
    assert _put(gateway, tenant["id"], "a", api_key=TENANT_KEY).json()["base_url"] is None
    assert {row["upstream"]: row["base_url"] for row in _listing(gateway, tenant["id"])}["a"] is None


def test_allowed_tenant_endpoint_gets_the_tenant_key_and_path(
    start,
    sqlite_url: str,
    upstream_a: ScriptedUpstream,
    upstream_b: ScriptedUpstream,
    tenant_endpoint: ScriptedUpstream,
) -> None:
    gateway, resolver = start(
        sqlite_url, tenant_upstream_allowed_networks="127.0.0.0/8", tenant_upstream_allow_http=True
    )
    resolver.table["llm.tenant.example"] = ["127.0.0.1"]
    byok = gateway.new_key("byok")
    other = gateway.new_key("other")
    own_url = f"http://llm.tenant.example:{tenant_endpoint.port}/v1"
    assert _put(gateway, byok["tenant_id"], "a", api_key=TENANT_KEY, base_url=own_url).status_code == 200
    azure_url = f"http://127.0.0.1:{tenant_endpoint.port}"
    assert _put(gateway, byok["tenant_id"], "b", api_key=TENANT_KEY, base_url=azure_url).status_code == 200

    reply = gateway.client(byok["key"]).chat.completions.create(model="fast", messages=MESSAGES)
    assert reply.choices[0].message.content == "hi"
    gateway.client(byok["key"]).chat.completions.create(model="only-b", messages=MESSAGES)
    gateway.client(other["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    openai_style, azure_style = tenant_endpoint.requests
    assert openai_style.target == "/v1/chat/completions"
    assert openai_style.headers["authorization"] == f"Bearer {TENANT_KEY}"
    assert openai_style.headers["host"] == f"llm.tenant.example:{tenant_endpoint.port}"
    assert orjson.loads(openai_style.body)["model"] == "a-mini"
    assert azure_style.target == "/openai/deployments/only-b/chat/completions?api-version=2024-10-21"
    assert azure_style.headers["api-key"] == TENANT_KEY and "authorization" not in azure_style.headers
    # The other tenant still goes to the operator's endpoint with the operator's key; b saw nothing at all.
    (operator,) = upstream_a.requests
    assert operator.headers["authorization"] == "Bearer sk-key-of-a"
    assert upstream_b.requests == []

    assert gateway.admin("DELETE", f"/admin/tenants/{byok['tenant_id']}/upstream-keys/a").status_code == 204
    gateway.client(byok["key"]).chat.completions.create(model="fast", messages=MESSAGES)
    assert len(upstream_a.requests) == 2 and len(tenant_endpoint.requests) == 2


def test_stored_response_is_fetched_from_the_tenant_endpoint(
    start, sqlite_url: str, upstream_a: ScriptedUpstream, tenant_endpoint: ScriptedUpstream
) -> None:
    gateway, _ = start(sqlite_url, tenant_upstream_allowed_networks="127.0.0.0/8", tenant_upstream_allow_http=True)
    byok = gateway.new_key("byok")
    own_url = f"http://127.0.0.1:{tenant_endpoint.port}/v1"
    assert _put(gateway, byok["tenant_id"], "a", api_key=TENANT_KEY, base_url=own_url).status_code == 200
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    stored = {"id": "resp_tenant_1", "object": "response", "created_at": 1, "status": "completed", "model": "a-mini",
              "output": [], "usage": usage}  # fmt: skip
    tenant_endpoint.push(json_answer(200, stored), json_answer(200, stored))
    client = gateway.client(byok["key"])
    assert client.responses.create(model="gpt-4o-mini", input="hi").id == "resp_tenant_1"
    assert client.responses.retrieve("resp_tenant_1").id == "resp_tenant_1"
    fetched = tenant_endpoint.requests[-1]
    assert (fetched.method, fetched.target) == ("GET", "/v1/responses/resp_tenant_1")
    assert fetched.headers["authorization"] == f"Bearer {TENANT_KEY}"
    assert upstream_a.requests == []


def _refused(gateway: Gateway, key: str, *, stream: bool = False) -> openai.InternalServerError:
    with pytest.raises(openai.InternalServerError) as raised:
        created = gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
        if stream:
            list(created)
    error = raised.value
    assert error.status_code == 502 and error.code == "upstream_address_forbidden", error
    assert error.type == "api_error" and error.request_id and error.request_id in error.message
    return error


def test_host_that_later_resolves_inside_is_refused_at_connection(
    start, sqlite_url: str, upstream_a: ScriptedUpstream, tenant_endpoint: ScriptedUpstream
) -> None:
    gateway, resolver = start(sqlite_url, tenant_upstream_allow_http=True)
    resolver.table["rebind.example"] = ["8.8.8.8"]
    byok = gateway.new_key("rebind")
    # The port is the tenant endpoint's, listening on loopback: only the guard stands between the two.
    own_url = f"http://rebind.example:{tenant_endpoint.port}/v1"
    assert _put(gateway, byok["tenant_id"], "a", api_key=TENANT_KEY, base_url=own_url).status_code == 200

    resolver.table["rebind.example"] = ["127.0.0.1"]  # DNS answers differently after the check
    _refused(gateway, byok["key"])
    _refused(gateway, byok["key"], stream=True)
    assert tenant_endpoint.requests == [] and upstream_a.requests == []

    flush(gateway)
    events = all_events(gateway, tenant_id=byok["tenant_id"])
    assert [(e["status"], e["upstream"], e["error_type"], e["billable"]) for e in events] == [
        (502, "a", "upstream_address_forbidden", False)
    ] * 2


def test_records_written_around_the_api_are_refused_when_used(
    start, sqlite_url: str, upstream_a: ScriptedUpstream, tenant_endpoint: ScriptedUpstream
) -> None:
    gateway, _ = start(sqlite_url, tenant_upstream_allow_http=True)
    loopback = gateway.new_key("loopback")
    with_credentials = gateway.new_key("credentials")
    rows = {
        loopback["tenant_id"]: f"http://127.0.0.1:{tenant_endpoint.port}/v1",  # refused at connection
        with_credentials["tenant_id"]: f"http://me:pw@8.8.8.8:{tenant_endpoint.port}/v1",  # refused when loaded
    }

    async def write() -> None:
        async with gateway.runtime.sessions() as session, session.begin():
            for tenant_id, base_url in rows.items():
                ciphertext = gateway.runtime.secret_box.encrypt(TENANT_KEY)
                session.add(
                    TenantUpstreamKey(tenant_id=tenant_id, upstream="a", ciphertext=ciphertext, base_url=base_url)
                )

    asyncio.run_coroutine_threadsafe(write(), gateway.loop).result(10)
    _refused(gateway, loopback["key"])
    _refused(gateway, with_credentials["key"])
    assert tenant_endpoint.requests == [] and upstream_a.requests == []
