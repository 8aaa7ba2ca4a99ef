"""Fixtures for telemetry tests: gateways with in-memory span capture, an upstream that records headers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.types import Message, Receive, Scope, Send

from tenantgate import database
from tenantgate.core.exchange import Exchange
from tenantgate.devupstream import DevUpstream
from tenantgate.devupstream.catalog import MODELS
from tenantgate.platform.errors import GatewayError
from tests.conftest import UPSTREAM_KEY
from tests.support.databases import migrated_sqlite_url
from tests.support.gateway import Gateway
from tests.support.server import ServedApp


@dataclass
class HeaderRecordingUpstream:
    """The dev upstream, remembering the headers of every request it received."""

    inner: DevUpstream = field(default_factory=lambda: DevUpstream(api_key=UPSTREAM_KEY))
    seen: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.inner(scope, receive, send)


class KnownModelsOnly:
    """The dev upstream answering 404 ``model_not_found`` for models it does not list, as OpenAI does."""

    def __init__(self) -> None:
        self.inner = DevUpstream(api_key=UPSTREAM_KEY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        model = orjson.loads(body).get("model")
        if model not in MODELS:
            error = {"error": {"message": f"The model `{model}` does not exist", "type": "invalid_request_error"}}
            payload = orjson.dumps(error)
            await send(
                {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.inner(scope, replay, send)


@pytest.fixture
def known_models_upstream() -> Iterator[str]:
    with ServedApp(KnownModelsOnly(), lifespan="off") as served:
        yield served.url + "/v1"


@dataclass
class RecordingUpstream:
    url: str
    app: HeaderRecordingUpstream


@pytest.fixture
def recording_upstream() -> Iterator[RecordingUpstream]:
    app = HeaderRecordingUpstream()
    with ServedApp(app, lifespan="off") as served:
        yield RecordingUpstream(served.url + "/v1", app)


@dataclass
class Traced:
    gateway: Gateway
    exporter: InMemorySpanExporter

    def spans(self, count: int, timeout: float = 5.0) -> list[ReadableSpan]:
        """Wait until at least ``count`` spans were exported (server spans end after the response is sent)."""
        deadline = time.monotonic() + timeout
        while len(self.exporter.get_finished_spans()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.exporter.get_finished_spans())

    def clear(self, after: str = "POST /admin/tenants/{tenant_id}/keys") -> None:
        """Forget the spans so far, once the last request's server span is in (it ends after its response)."""
        self.named(after)
        self.exporter.clear()

    def named(self, *names: str, timeout: float = 5.0) -> dict[str, ReadableSpan]:
        """Wait for spans of these names (server spans end after the response was sent), by name."""
        deadline = time.monotonic() + timeout
        while True:
            spans = {span.name: span for span in self.exporter.get_finished_spans()}
            if all(name in spans for name in names) or time.monotonic() > deadline:
                return spans

    def of_kind(self, kind: SpanKind) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.kind is kind]


@pytest.fixture
def traced_factory(gateway_factory: Callable[..., Gateway], tmp_path: Any) -> Callable[..., Traced]:
    def start(**overrides: Any) -> Traced:
        if "database_url" in overrides:
            database.upgrade(overrides["database_url"])
        else:
            overrides["database_url"] = migrated_sqlite_url(tmp_path / "traced.db")
        overrides.setdefault("tracing_enabled", True)
        overrides.setdefault("otel_traces_exporter", "none")
        gateway = gateway_factory(**overrides)
        exporter = InMemorySpanExporter()
        assert gateway.runtime.telemetry.tracing is not None
        gateway.runtime.telemetry.tracing.add_span_processor(SimpleSpanProcessor(exporter))
        return Traced(gateway, exporter)

    return start


class RefuseWith429:
    """Stands in for the rate limiter: refuses every request in ``admit``."""

    name = "refuse"

    async def admit(self, exchange: Exchange) -> None:
        exchange.response_headers.append((b"x-ratelimit-remaining-requests", b"0"))
        exchange.refused_by = "requests"
        error = GatewayError("Rate limit reached for requests", code="rate_limit_exceeded")
        error.status, error.type = 429, "requests"
        raise error

    async def settle(self, exchange: Exchange) -> None:
        return None

    def finish(self, exchange: Exchange) -> None:
        return None
