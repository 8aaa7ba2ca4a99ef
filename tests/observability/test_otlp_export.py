"""Real OTLP exports, chosen by the standard OTEL_* variables, reach a receiver over HTTP/protobuf and gRPC."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from pydantic import ValidationError

from tenantgate.platform.app import create_app
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY, make_settings
from tests.support.databases import migrated_sqlite_url
from tests.support.gateway import Gateway
from tests.support.otlp import GrpcReceiver, HttpReceiver, Received, attributes
from tests.support.server import ServedApp

MESSAGES = [{"role": "user", "content": "export me"}]


def _serve_one_request_and_stop(tmp_path: Path, dev_upstream: str) -> None:
    url = migrated_sqlite_url(tmp_path / "otlp.db")
    settings = make_settings(
        database_url=url,
        upstream_base_url=dev_upstream,
        upstream_api_key=UPSTREAM_KEY,
        tracing_enabled=True,
    )
    app = create_app(settings)
    with ServedApp(app) as served:
        gateway = Gateway(url=served.url, admin_token=ADMIN_TOKEN, settings=settings, runtime=app.runtime)
        key = gateway.new_key()["key"]
        client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # Leaving the block ran the lifespan's shutdown: spans flushed, metrics exported one last time.


def _assert_received(received: Received) -> None:
    spans = {span.name: span for span in received.spans()}
    server, client = spans["POST /v1/chat/completions"], spans["chat gpt-4o-mini"]
    assert client.parent_span_id == server.span_id and client.trace_id == server.trace_id
    assert attributes(client)["gen_ai.operation.name"] == "chat"
    assert attributes(client)["gen_ai.usage.output_tokens"] > 0
    assert received.resource_attributes()["service.name"] == "tg-otlp-test"

    tokens = received.metric("gen_ai.client.token.usage")
    assert tokens is not None and tokens.unit == "{token}"
    assert list(tokens.histogram.data_points[0].explicit_bounds)[:3] == [1, 4, 16]
    assert sum(p.count for p in tokens.histogram.data_points) == 2  # input and output of one request
    duration = received.metric("http.server.request.duration")
    assert duration is not None and duration.unit == "s"
    assert received.metric("tenantgate.upstream.attempts") is not None


def test_otlp_over_http_protobuf(tmp_path: Path, dev_upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_SERVICE_NAME", "tg-otlp-test")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
        _serve_one_request_and_stop(tmp_path, dev_upstream)
        assert {"/v1/traces", "/v1/metrics"} <= set(receiver.received.paths)
        _assert_received(receiver.received)


def test_otlp_over_grpc(tmp_path: Path, dev_upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with GrpcReceiver() as receiver:
        monkeypatch.setenv("OTEL_SERVICE_NAME", "tg-otlp-test")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,prometheus")
        _serve_one_request_and_stop(tmp_path, dev_upstream)
        _assert_received(receiver.received)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_METRICS_EXPORTER", "otlp,statsd"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ],
)
def test_unsupported_otel_settings_are_refused_with_a_clear_message(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        make_settings()
    assert value.split(",")[-1] in str(raised.value)
