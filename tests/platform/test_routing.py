"""Routing table: aliases, failover across deployments, Azure addressing, allow-lists, BYOK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
from sqlalchemy import select, update

from tenantgate.tenants.models import ApiKey, TenantUpstreamKey
from tests.support.gateway import Gateway
from tests.support.scripted import ScriptedUpstream, chat_completion, json_answer

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream_a() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream_b() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenantgate.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def routed(
    gateway_factory,
    sqlite_url: str,
    tmp_path: Path,
    upstream_a: ScriptedUpstream,
    upstream_b: ScriptedUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> Gateway:
    monkeypatch.setenv("TEST_KEY_A", "sk-key-of-a")
    config = _config(
        tmp_path,
        f"""
upstreams:
  - {{name: a, base_url: "{upstream_a.base_url}", api_key: "${{TEST_KEY_A}}", max_retries: 0}}
  - {{name: b, kind: azure, base_url: "{upstream_b.base_url[:-3]}", api_key: sk-key-of-b, api_version: "2024-10-21"}}
models:
  - name: gpt-4o-mini
    aliases: [fast]
    deployments:
      - {{upstream: a, model: a-mini}}
      - {{upstream: b, model: b-deployment}}
  - name: only-b
    deployments: [{{upstream: b}}]
default_upstream: null
""",
    )
    return gateway_factory(database_url=sqlite_url, config_file=config)


def test_alias_is_rewritten_to_the_deployment_model(routed: Gateway, upstream_a: ScriptedUpstream) -> None:
    key = routed.new_key()["key"]
    routed.client(key).chat.completions.create(model="fast", messages=MESSAGES)
    (request,) = upstream_a.requests
    assert orjson.loads(request.body)["model"] == "a-mini"
    assert request.headers["authorization"] == "Bearer sk-key-of-a"  # ${TEST_KEY_A} expanded


def test_failover_reaches_the_azure_deployment(
    routed: Gateway, upstream_a: ScriptedUpstream, upstream_b: ScriptedUpstream
) -> None:
    upstream_a.push(json_answer(500, {"error": {"message": "down", "type": "server_error"}}))
    upstream_b.push(json_answer(200, chat_completion("from b")))
    key = routed.new_key()["key"]
    reply = routed.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "from b"
    (request,) = upstream_b.requests
    assert request.target == "/openai/deployments/b-deployment/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == "sk-key-of-b"
    assert "authorization" not in request.headers


def test_unrouted_model_is_not_found(routed: Gateway) -> None:
    key = routed.new_key()["key"]
    with pytest.raises(openai.NotFoundError) as raised:
        routed.client(key).chat.completions.create(model="gpt-unknown", messages=MESSAGES)
    assert raised.value.code == "model_not_found"


def _restrict_key(gateway: Gateway, key_id: str, models: list[str]) -> None:
    async def apply() -> None:
        async with gateway.runtime.sessions() as session, session.begin():
            await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(allowed_models=models))
        gateway.runtime.key_cache.invalidate_key(key_id)

    asyncio.run_coroutine_threadsafe(apply(), gateway.loop).result(10)


def test_models_list_and_allow_list(routed: Gateway) -> None:
    created = routed.new_key()
    client = routed.client(created["key"])
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "only-b"]
    _restrict_key(routed, created["id"], ["only-b"])
    assert [m.id for m in client.models.list()] == ["only-b"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o-mini")
    assert client.models.retrieve("only-b").id == "only-b"


def test_tenant_brings_its_own_upstream_key(routed: Gateway, upstream_a: ScriptedUpstream) -> None:
    byok = routed.new_key("byok")
    other = routed.new_key("other")
    response = routed.admin(
        "PUT", f"/admin/tenants/{byok['tenant_id']}/upstream-keys/a", json={"api_key": "sk-tenant-own-key"}
    )
    assert response.status_code == 200 and "sk-tenant-own-key" not in response.text
    listing = routed.admin("GET", f"/admin/tenants/{byok['tenant_id']}/upstream-keys")
    assert [k["upstream"] for k in listing.json()] == ["a"] and "sk-tenant" not in listing.text

    routed.client(byok["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    routed.client(other["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [r.headers["authorization"] for r in upstream_a.requests] == [
        "Bearer sk-tenant-own-key",
        "Bearer sk-key-of-a",
    ]

    async def stored() -> list[str]:
        async with routed.runtime.sessions() as session:
            return list((await session.execute(select(TenantUpstreamKey.ciphertext))).scalars())

    (ciphertext,) = asyncio.run_coroutine_threadsafe(stored(), routed.loop).result(10)
    assert "sk-tenant-own-key" not in ciphertext

    assert routed.admin("DELETE", f"/admin/tenants/{byok['tenant_id']}/upstream-keys/a").status_code == 204
    routed.client(byok["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert upstream_a.requests[-1].headers["authorization"] == "Bearer sk-key-of-a"


def test_byok_for_unknown_upstream_is_404(routed: Gateway) -> None:
    tenant = routed.create_tenant("byok-unknown")
    response = routed.admin("PUT", f"/admin/tenants/{tenant['id']}/upstream-keys/nope", json={"api_key": "x"})
    assert response.status_code == 404
