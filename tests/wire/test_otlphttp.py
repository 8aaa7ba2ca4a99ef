"""The OTLP/HTTP sender: the OpenTelemetry variables, the specification's retries, TLS, and no leaked headers."""

from __future__ import annotations

import datetime
import gzip
import logging
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tenantgate.wire.otlphttp import OtlpHttpConfig, OtlpHttpSender, _retry_after
from tests.conftest import make_settings
from tests.support.tls import self_signed

TRACE_ENV = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TRACE_ENV:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Collector:
    """An OTLP/HTTP endpoint answering each POST with the next scripted (status, headers), then 200."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    url: str = ""


@pytest.fixture
def collector() -> Iterator[Collector]:
    yield from _serve(Collector())


def _settings_variables() -> dict[str, str]:
    """The OTEL_EXPORTER_OTLP_* variables as the gateway reads them: once, with the rest of its settings."""
    return make_settings().otlp_variables()


def _serve(state: Collector, context: ssl.SSLContext | None = None) -> Iterator[Collector]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            state.connections.add(self.client_address)
            status, headers = state.script.pop(0) if state.script else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    state.url = f"{scheme}://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _sender(endpoint: str, **config: Any) -> OtlpHttpSender:
    return OtlpHttpSender(OtlpHttpConfig(endpoint=endpoint, **config), "traces")


def test_endpoints_headers_timeout_and_compression_come_from_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://metrics.example/custom/path")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=a,Authorization=Basic%20c2VjcmV0")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-only-traces=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2.5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip")

    traces = OtlpHttpConfig.from_variables(_settings_variables(), "traces")
    metrics = OtlpHttpConfig.from_variables(_settings_variables(), "metrics")

    assert traces.endpoint == "http://collector:4318/v1/traces"  # the base endpoint, plus the signal's path
    assert metrics.endpoint == "https://metrics.example/custom/path"  # the signal's own, as given
    assert traces.headers == {"x-only-traces": "1"}  # the signal's own variable replaces the general one
    assert metrics.headers == {"x-tenant": "a", "authorization": "Basic c2VjcmV0"}
    assert traces.timeout == metrics.timeout == 2.5
    assert (traces.compression, metrics.compression) == ("none", "gzip")
    assert "c2VjcmV0" not in repr(metrics)


def test_defaults_follow_the_specification() -> None:
    config = OtlpHttpConfig.from_variables(_settings_variables(), "metrics")
    assert (config.endpoint, config.timeout, config.compression) == ("http://localhost:4318/v1/metrics", 10.0, "none")


def test_a_batch_is_posted_as_protobuf_with_the_headers_over_one_kept_alive_connection(collector: Collector) -> None:
    sender = _sender(f"{collector.url}/v1/traces", headers={"x-api-key": "vendor-secret"})
    assert sender.send(b"\x0a\x00first") and sender.send(b"second")
    sender.close()

    assert [(s.path, s.body) for s in collector.seen] == [("/v1/traces", b"\x0a\x00first"), ("/v1/traces", b"second")]
    headers = collector.seen[0].headers
    assert headers["content-type"] == "application/x-protobuf" and headers["x-api-key"] == "vendor-secret"
    assert len(collector.connections) == 1


@pytest.mark.parametrize(("compression", "decompress"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_compressed_bodies_say_so(collector: Collector, compression: Any, decompress: Any) -> None:
    sender = _sender(collector.url, compression=compression)
    assert sender.send(b"spans" * 100)
    (seen,) = collector.seen
    assert seen.headers["content-encoding"] == compression and decompress(seen.body) == b"spans" * 100


def test_retryable_answers_are_retried_after_retry_after(collector: Collector) -> None:
    collector.script = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    sender = _sender(collector.url)
    assert sender.send(b"batch")
    assert [s.body for s in collector.seen] == [b"batch"] * 3


def test_other_answers_fail_at_once_without_logging_the_headers(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    collector.script = [(400, {})]
    sender = _sender(collector.url, headers={"authorization": "Bearer vendor-secret"})
    with caplog.at_level(logging.DEBUG, logger="tenantgate.telemetry"):
        assert not sender.send(b"batch")
    assert len(collector.seen) == 1
    assert "HTTP 400" in caplog.text and "vendor-secret" not in caplog.text


def test_an_unreachable_collector_fails_within_the_timeout() -> None:
    sender = _sender("http://127.0.0.1:9/v1/traces", timeout=1.5)  # discard port: connection refused
    started = time.monotonic()
    assert not sender.send(b"batch")
    assert time.monotonic() - started < 2.5  # retried (after ~1 s) while the timeout allowed, not past it


def test_closing_the_exporter_interrupts_a_backoff_wait(collector: Collector) -> None:
    collector.script = [(503, {"Retry-After": "30"})]
    sender = _sender(collector.url, timeout=60)
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(sender.send(b"batch")))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    sender.close()
    thread.join(5)
    assert outcome == [False] and time.monotonic() - started < 2


def test_retry_after_as_seconds_or_an_http_date() -> None:
    assert _retry_after("3") == 3.0
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=20)
    assert 15 < (_retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT")) or 0) <= 20
    assert _retry_after("soon") is None and _retry_after("-4") == 0.0


def test_https_with_the_configured_certificate_and_refused_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ca_file, context = self_signed(tmp_path)
    for state in _serve(Collector(), context):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", state.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca_file))
        trusted = OtlpHttpSender(OtlpHttpConfig.from_variables(_settings_variables(), "traces"), "traces")
        assert trusted.send(b"over tls")
        untrusted = _sender(f"{state.url}/v1/traces", timeout=30)  # the system's CAs do not know this one
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="tenantgate.telemetry"):
            assert not untrusted.send(b"refused")
        assert time.monotonic() - started < 5  # not retried for the 30 s the timeout would allow
        assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in caplog.text
        assert [s.body for s in state.seen] == [b"over tls"]


def test_mutual_tls_sends_the_configured_client_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "collector").mkdir()
    (tmp_path / "client").mkdir()
    ca_file, context = self_signed(tmp_path / "collector")
    client_cert, _ = self_signed(tmp_path / "client")
    context.load_verify_locations(cafile=str(client_cert))
    context.verify_mode = ssl.CERT_REQUIRED  # the collector refuses a client without a certificate it trusts
    for state in _serve(Collector(), context):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", state.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca_file))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1.5")  # the refused handshake is retried until then
        anonymous = OtlpHttpSender(OtlpHttpConfig.from_variables(_settings_variables(), "traces"), "traces")
        assert not anonymous.send(b"no client certificate")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", str(client_cert))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", str(tmp_path / "client" / "key.pem"))
        mutual = OtlpHttpSender(OtlpHttpConfig.from_variables(_settings_variables(), "traces"), "traces")
        assert mutual.send(b"with a client certificate")
        assert [s.body for s in state.seen] == [b"with a client certificate"]
