"""Secrets never show up after creation: not in logs, spans, API responses, the audit log, metrics or the database.

One realistic run through a served gateway (keys created, rotated, revoked; a tenant's own upstream key; requests
that succeed, fail and stream), then a sweep of everything an operator, an attacker with read access, or a log
pipeline could see, for every plaintext secret used in the run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import Receive, Scope, Send

from tenantgate.devupstream import DevUpstream
from tenantgate.observability.logging import JsonFormatter, RedactingFilter, RequestContextFilter, settings_secrets
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.metering import flush
from tests.support.server import ServedApp

# No recognisable prefix (Azure keys are 32 hex digits): only real care keeps it out, not pattern redaction.
BYOK_KEY = "byok" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


class TwoKeyUpstream:
    """The dev upstream accepting the operator's key and the tenant's own key, remembering which was sent."""

    def __init__(self) -> None:
        self.inner = DevUpstream()
        self.authorizations: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            self.authorizations.append(auth)
            if auth not in (f"Bearer {UPSTREAM_KEY}", f"Bearer {BYOK_KEY}"):
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b'{"error":{"message":"bad key"}}'})
                return
        await self.inner(scope, receive, send)


@pytest.fixture
def two_key_upstream() -> Iterator[tuple[str, TwoKeyUpstream]]:
    app = TwoKeyUpstream()
    with ServedApp(app, lifespan="off") as served:
        yield served.url + "/v1", app


@dataclass
class Seen:
    """Everything observable after secrets were created, each piece labelled with where it came from."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))

    def response(self, label: str, response: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add(f"response {label} ({response.status_code})", headers + "\n" + response.text)
        return response

    def hits(self, secrets: dict[str, str]) -> list[str]:
        return [f"{name} found in {where}" for where, text in self.items for name, s in secrets.items() if s in text]


class _Capture(logging.Handler):
    """What the production log handler writes (same filters, JSON formatter), at DEBUG for every logger."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestContextFilter())
        self.addFilter(RedactingFilter(secrets))
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_capture() -> Callable[[list[str]], _Capture]:
    root = logging.getLogger()
    installed: list[_Capture] = []
    old_level = root.level

    def install(secrets: list[str]) -> _Capture:
        handler = _Capture(secrets)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        installed.append(handler)
        return handler

    yield install  # type: ignore[misc]
    for handler in installed:
        root.removeHandler(handler)
    root.setLevel(old_level)


def _dump_database(url: str) -> list[tuple[str, str]]:
    """Every value of every row of every table, as text, labelled by table and column."""

    async def dump() -> list[tuple[str, str]]:
        engine = create_async_engine(url)
        try:
            meta = sa.MetaData()
            async with engine.connect() as conn:
                await conn.run_sync(meta.reflect)
                out: list[tuple[str, str]] = []
                for table in meta.sorted_tables:
                    for row in (await conn.execute(sa.select(table))).mappings():
                        for column, value in row.items():
                            if value is not None:
                                text = value.hex() if isinstance(value, bytes) else str(value)
                                out.append((f"database {table.name}.{column}", text))
                                if isinstance(value, bytes):
                                    out.append((f"database {table.name}.{column}", value.decode("latin-1")))
                return out
        finally:
            await engine.dispose()

    return asyncio.run(dump())


def _run_scenario(gateway: Gateway, seen: Seen, upstream: TwoKeyUpstream) -> dict[str, str]:
    """Create, use, rotate and revoke secrets; record every response after each secret's creation."""
    secrets: dict[str, str] = {"operator upstream key": UPSTREAM_KEY, "admin token": ADMIN_TOKEN}
    proxy = httpx.Client(base_url=gateway.base_url, timeout=30)

    def call(label: str, key: str, path: str = "/chat/completions", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        return seen.response(label, proxy.post(path, json=kwargs.pop("json", CHAT), headers=headers, **kwargs))

    token = gateway.admin("POST", "/admin/tokens", json={"name": "ops", "role": "admin"})
    assert token.status_code == 201, token.text
    secrets["second admin token"] = token.json()["token"]

    alpha = gateway.create_tenant(f"alpha-{uuid.uuid4().hex[:6]}")
    beta = gateway.create_tenant(f"beta-{uuid.uuid4().hex[:6]}")
    a1 = gateway.create_key(alpha["id"], name="a1")
    b1 = gateway.create_key(beta["id"], name="b1")
    secrets |= {"tenant key a1": a1["key"], "tenant key b1": b1["key"]}

    upstream_name = next(iter(gateway.runtime.routing.upstreams))
    byok_path = f"/admin/tenants/{beta['id']}/upstream-keys/{upstream_name}"
    byok = gateway.admin("PUT", byok_path, json={"api_key": BYOK_KEY})
    seen.response("PUT upstream key", byok)
    assert byok.status_code == 200, byok.text
    secrets["tenant's own upstream key"] = BYOK_KEY

    # Succeed, stream, fail upstream, fail auth.
    assert call("chat a1", a1["key"]).status_code == 200
    assert call("chat b1 (own upstream key)", b1["key"]).status_code == 200
    assert f"Bearer {BYOK_KEY}" in upstream.authorizations, "the tenant's own key was not used; sweep is moot"
    with proxy.stream(
        "POST", "/chat/completions", json={**CHAT, "stream": True}, headers={"Authorization": f"Bearer {a1['key']}"}
    ) as streamed:
        body = streamed.read()
        seen.add(f"stream a1 ({streamed.status_code})", str(streamed.headers) + body.decode())
        assert streamed.status_code == 200 and b"[DONE]" in body
    assert call("embeddings b1", b1["key"], "/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    failed = call("chat a1 upstream 500", a1["key"], headers={"x-dev-fail": "500"})
    assert failed.status_code >= 500
    wrong = call("chat wrong key", a1["key"][:-4] + "zzzz")
    assert wrong.status_code == 401

    # Rotate (old key keeps working for the grace period), then revoke the new one and try both.
    rotated = gateway.admin("POST", f"/admin/keys/{a1['id']}/rotate", json={"grace_seconds": 0})
    assert rotated.status_code == 201, rotated.text
    secrets["rotated tenant key a2"] = rotated.json()["key"]
    seen.add("rotate response (minus the new plaintext)", rotated.text.replace(rotated.json()["key"], ""))
    assert call("chat rotated-out a1", a1["key"]).status_code == 401
    assert call("chat a2", secrets["rotated tenant key a2"]).status_code == 200
    revoked = gateway.admin("POST", f"/admin/keys/{rotated.json()['id']}/revoke")
    seen.response("revoke a2", revoked)
    assert revoked.status_code == 200
    assert call("chat revoked a2", secrets["rotated tenant key a2"]).status_code == 401

    # Everything an operator or a tenant can read afterwards.
    flush(gateway)
    for path in (
        "/admin/tenants",
        f"/admin/tenants/{alpha['id']}",
        f"/admin/tenants/{beta['id']}",
        f"/admin/tenants/{alpha['id']}/keys",
        f"/admin/tenants/{beta['id']}/upstream-keys",
        "/admin/keys",
        f"/admin/keys/{a1['id']}",
        f"/admin/keys/{b1['id']}/limits",
        "/admin/tokens",
        "/admin/audit",
        "/admin/usage/events",
        "/metrics",
        "/console/api/overview",
        "/console/api/series?window=15m",
    ):
        response = seen.response(f"GET {path}", gateway.admin("GET", path))
        assert response.status_code == 200, (path, response.text)
    for path in ("/me", "/organization/usage/completions?start_time=0", "/organization/costs?start_time=0"):
        response = seen.response(f"GET /v1{path}", proxy.get(path, headers={"Authorization": f"Bearer {b1['key']}"}))
        assert response.status_code == 200, (path, response.text)
    proxy.close()
    return secrets


def test_no_secret_is_visible_anywhere_after_creation(
    gateway_factory: Callable[..., Gateway],
    database_url: str,
    two_key_upstream: tuple[str, TwoKeyUpstream],
    log_capture: Callable[[list[str]], _Capture],
) -> None:
    upstream_url, upstream = two_key_upstream
    gateway = gateway_factory(
        database_url=database_url, upstream_base_url=upstream_url, tracing_enabled=True, otel_traces_exporter="none"
    )
    exporter = InMemorySpanExporter()
    assert gateway.runtime.telemetry.tracing is not None
    gateway.runtime.telemetry.tracing.add_span_processor(SimpleSpanProcessor(exporter))
    logs = log_capture(settings_secrets(gateway.settings))
    seen = Seen()

    secrets = _run_scenario(gateway, seen, upstream)

    for line in logs.lines:
        seen.add("log", line)
    for span in exporter.get_finished_spans():
        seen.add(f"span {span.name!r} attributes", repr(dict(span.attributes or {})))
        seen.add(f"span {span.name!r} status", str(span.status.description))
        for event in span.events:
            seen.add(f"span {span.name!r} event {event.name!r}", repr(dict(event.attributes or {})))
    seen.items.extend(_dump_database(database_url))

    # The sweep looked at real material: logs, server and client spans, usage rows, the audit log.
    assert logs.lines and any(where == "log" for where, _ in seen.items)
    assert any(s.name == "POST /v1/chat/completions" for s in exporter.get_finished_spans())
    assert any(where.startswith("database usage_events") for where, _ in seen.items)
    assert any(where.startswith("response GET /admin/audit") and "rotate" in text for where, text in seen.items)
    assert seen.hits(secrets) == []
