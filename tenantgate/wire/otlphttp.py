"""OTLP/HTTP export (``http/protobuf``) with the standard library's HTTP client.

The SDK's OTLP/HTTP exporters send with requests (with urllib3, charset_normalizer, idna and certifi, about 70
modules) and encode with protobuf's message classes: about 5 MB of every worker's memory for a few POSTs a minute.
Here spans are encoded by ``spanwire``, metrics by ``metricwire``, and both are sent by ``OtlpHttpSender`` from
the export threads (the span batcher's, and the metrics export's worker thread), never from the event loop; the
SDK's exporter interfaces around them are in observability/otlphttp.py.

Configured as the SDK's exporters are, by the OpenTelemetry variables, the signal's own first:
``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`` (used as given) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus
``/v1/traces`` or ``/v1/metrics``; default ``http://localhost:4318``), ``..._HEADERS`` (``k=v,k2=v2``, values
URL-encoded), ``..._TIMEOUT`` (seconds, as the Python SDK reads it; default 10), ``..._COMPRESSION`` (``gzip``,
``deflate`` or ``none``), ``..._CERTIFICATE`` (CA bundle for https; default: the system's),
``..._CLIENT_CERTIFICATE`` and ``..._CLIENT_KEY`` (mutual TLS).

Retries follow the OTLP specification: 429, 502, 503 and 504 answers and failed connections are retried with
exponential backoff (1, 2, 4... seconds, 20% jitter), or after the server's ``Retry-After``, for as long as the
timeout allows; any other answer, and a collector certificate that does not verify, fails the export at once.
Header values (API keys of a tracing vendor) are never logged.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import logging
import random
import ssl
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from opentelemetry.util.re import parse_env_headers

from tenantgate import __version__

log = logging.getLogger("tenantgate.telemetry")

Signal = Literal["traces", "metrics"]
DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_TIMEOUT_SECONDS = 10.0
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 6
JITTER = 0.2
Compression = Literal["none", "gzip", "deflate"]
_UNTRUSTED = "untrusted certificate"


def _variable(variables: Mapping[str, str], signal: Signal, name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_<NAME>``, else ``OTEL_EXPORTER_OTLP_<NAME>`` (empty counts as unset)."""
    return variables.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}") or variables.get(f"OTEL_EXPORTER_OTLP_{name}")


@dataclass(frozen=True)
class OtlpHttpConfig:
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    compression: Compression = "none"
    certificate: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None

    @classmethod
    def from_variables(cls, variables: Mapping[str, str], signal: Signal) -> OtlpHttpConfig:
        """The configuration the standard ``OTEL_EXPORTER_OTLP_*`` variables give (the caller read them: the
        gateway's settings)."""
        endpoint = variables.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        if not endpoint:
            base = variables.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
            endpoint = f"{base.removesuffix('/')}/v1/{signal}"
        headers = {
            k.lower(): v
            for k, v in parse_env_headers(_variable(variables, signal, "HEADERS") or "", liberal=True).items()
        }
        raw_timeout = _variable(variables, signal, "TIMEOUT")
        try:
            timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT_SECONDS
        except ValueError:
            timeout = DEFAULT_TIMEOUT_SECONDS
            log.warning("OTLP %s: timeout %r is not a number of seconds; using %s", signal, raw_timeout, timeout)
        compression = (_variable(variables, signal, "COMPRESSION") or "none").strip().lower()
        if compression not in ("none", "gzip", "deflate"):
            log.warning("OTLP %s: unsupported compression %r; sending uncompressed", signal, compression)
            compression = "none"
        return cls(
            endpoint=endpoint,
            headers=headers,
            timeout=timeout,
            compression=compression,  # type: ignore[arg-type]  # checked above
            certificate=_variable(variables, signal, "CERTIFICATE"),
            client_certificate=_variable(variables, signal, "CLIENT_CERTIFICATE"),
            client_key=_variable(variables, signal, "CLIENT_KEY"),
        )


class OtlpHttpSender:
    """POSTs serialised OTLP requests to one endpoint over one kept-alive connection, with the specification's
    retries. Thread-safe; ``close()`` interrupts a backoff wait."""

    def __init__(self, config: OtlpHttpConfig, signal: Signal) -> None:
        self.config = config
        self.signal = signal
        url = urlsplit(config.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"OTLP {signal} endpoint must be an http:// or https:// URL")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._headers = {
            "content-type": "application/x-protobuf",
            "user-agent": f"tenantgate/{__version__} (OTLP/HTTP exporter)",
            **config.headers,
        }
        if config.compression != "none":
            self._headers["content-encoding"] = config.compression
        self._ssl = self._ssl_context() if self._https else None
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.certificate)
        if self.config.client_certificate:
            context.load_cert_chain(self.config.client_certificate, self.config.client_key)
        return context

    def _compress(self, body: bytes) -> bytes:
        if self.config.compression == "gzip":
            return gzip.compress(body, compresslevel=6, mtime=0)
        if self.config.compression == "deflate":
            return zlib.compress(body)
        return body

    def send(self, body: bytes) -> bool:
        """Deliver ``body``; False once the server refused it, or retrying would pass the timeout."""
        if self._closed.is_set():
            return False
        data = self._compress(body)
        deadline = time.monotonic() + self.config.timeout
        with self._lock:
            for attempt in range(MAX_ATTEMPTS):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                status, retry_after, problem = self._post(data, remaining)
                if status is not None and 200 <= status < 300:
                    return True
                if status is not None and status not in RETRYABLE_STATUSES:
                    log.warning("OTLP %s export refused: HTTP %d (not retried)", self.signal, status)
                    return False
                if problem == _UNTRUSTED:
                    log.warning(
                        "OTLP %s export failed: the collector's TLS certificate is not trusted (set "
                        "OTEL_EXPORTER_OTLP_CERTIFICATE to its CA bundle); not retried",
                        self.signal,
                    )
                    return False
                delay = retry_after if retry_after is not None else 2**attempt * random.uniform(1 - JITTER, 1 + JITTER)
                if attempt + 1 == MAX_ATTEMPTS or time.monotonic() + delay > deadline:
                    log.warning("OTLP %s export failed (%s); giving up on this batch", self.signal, problem)
                    return False
                log.info("OTLP %s export failed (%s); retrying in %.1fs", self.signal, problem, delay)
                if self._closed.wait(delay):
                    return False
            log.warning("OTLP %s export timed out after %.0fs", self.signal, self.config.timeout)
            return False

    def _post(self, data: bytes, timeout: float) -> tuple[int | None, float | None, str]:
        """One POST: (status, Retry-After seconds, what went wrong). A reused connection the server closed in the
        meantime is retried once on a new one straight away."""
        for fresh in (self._connection is None, True):
            connection = self._connect(timeout)
            try:
                connection.request("POST", self._path, body=data, headers=self._headers)
                response = connection.getresponse()
                response.read()  # drained, so the connection can carry the next export
            except ssl.SSLCertVerificationError:
                self._disconnect()
                return None, None, _UNTRUSTED  # no retry can change that
            except (OSError, http.client.HTTPException) as error:
                self._disconnect()
                if fresh:
                    return None, None, type(error).__name__
                continue
            if response.will_close:
                self._disconnect()
            return response.status, _retry_after(response.getheader("retry-after")), f"HTTP {response.status}"
        raise AssertionError("unreachable")

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._connection = connection
        else:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._disconnect()


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
