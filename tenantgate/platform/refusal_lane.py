"""Refusals from memory answered by the connection itself: a flood over its RPM costs the worker a fraction of what
serving it would.

A key or tenant known to be over a request-count window (``limits/known.py``) is refused before its body is read.
Through the ASGI stack that refusal still cost ~90 µs of CPU, a third of a served request: uvicorn's request cycle
and task, four middleware layers, the router. This lane gives the same answer from the HTTP protocol
(``http_protocol.py``) as soon as a request's head is complete: the key is looked up in the key cache (no lookup of
a key this process has not resolved lately - those take the ASGI path), the refusal is rendered from what
``KnownRefusals`` holds, and what the ASGI path records for it is recorded here too: the HTTP duration metric, the
exchange hooks (metering's once-a-second refusal record, GenAI telemetry), the key's last use. Back-pressure
(``limits/pacing.py``) holds the answer the same way.

The answer is the ASGI path's, header for header (``tests/platform/test_refusal_lane.py`` compares the two). What
differs, by decision: such a refusal opens no trace span unless the request carries a ``traceparent`` (those take
the ASGI path, so a traced caller still sees its span), and with the access log on every request takes the ASGI
path (each request is logged there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from tenantgate.core.exchange import Exchange
from tenantgate.observability.http import HttpMetrics
from tenantgate.platform.context import RequestContext
from tenantgate.platform.credentials import TenantKeys
from tenantgate.platform.limits.known import KnownRefusals
from tenantgate.platform.limits.pacing import RefusalPacer
from tenantgate.platform.middleware import presented_key, valid_request_id
from tenantgate.platform.proxy.hooks import Hooks
from tenantgate.platform.proxy.routes import COUNT_INPUT_TOKENS, CREATE_ROUTES, Route
from tenantgate.tenants.last_used import LastUsedTracker

_STATUS_LINE = b"HTTP/1.1 429 Too Many Requests\r\n"
_JSON = b"content-type: application/json\r\ncontent-length: "


class RefusalLane:
    def __init__(
        self,
        known: KnownRefusals,
        keys: TenantKeys,
        pacer: RefusalPacer,
        hooks: Hooks,
        last_used: LastUsedTracker,
        http_metrics: HttpMetrics | None,
        *,
        traced: bool,
    ) -> None:
        self.known = known
        self.keys = keys
        self.pacer = pacer
        self.hooks = hooks
        self.last_used = last_used
        self.http_metrics = http_metrics
        self.traced = traced
        self.answered = 0
        """Refusals this lane answered (``KnownRefusals.refused`` counts these and those of the ASGI path)."""
        # Exactly the requests the router refuses from memory before reading their body (router.create): POSTs to
        # the fixed model-work paths. Anything else - a query string, an encoded path - takes the ASGI path.
        self.paths: dict[bytes, Route] = {
            path.encode(): route for path, route in CREATE_ROUTES.items() if route.body != "none"
        }

    @property
    def armed(self) -> bool:
        """Some key or tenant is known to be over a window (else no request is looked at)."""
        return bool(self.known)

    def answer(
        self,
        method: bytes,
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        default_headers: Sequence[tuple[bytes, bytes]],
    ) -> tuple[bytes, float] | None:
        """The refusal for a request whose head is complete (the whole response, and how long it must wait before
        it goes out: 0 for at once, else the caller calls ``release`` after sending it), or None for the ASGI path."""
        route = self.paths.get(url)
        if route is None or method != b"POST":
            return None
        request_id = b""
        for name, value in headers:
            if name == b"x-request-id":
                request_id = value
            elif name == b"traceparent" and self.traced:
                return None
        key = presented_key(headers)
        principal = self.keys.cached(key) if key else None
        if principal is None or not principal.tenant_active:
            return None
        started = time.perf_counter()
        refused = self.known.check(principal)
        if refused is None:
            return None
        if not valid_request_id(request_id):
            request_id = b"req_" + os.urandom(16).hex().encode()
        self.answered += 1
        self.last_used.touch(principal.key_id)
        body = refused.body()
        head = [_STATUS_LINE]
        for name, value in default_headers:
            head += (name, b": ", value, b"\r\n")
        head += (_JSON, str(len(body)).encode(), b"\r\nx-request-id: ", request_id, b"\r\n")
        for header, text in refused.headers.items():
            head += (header.encode(), b": ", text.encode(), b"\r\n")
        head += (b"\r\n", body)
        wait = self.pacer.hold(principal.key_id, started, int(refused.headers["retry-after-ms"]) / 1000)

        exchange = Exchange(
            ctx=RequestContext(request_id=request_id.decode(), principal=principal),
            operation=route.operation,
            path=route.template,
            model_work=route is not COUNT_INPUT_TOKENS,
            started=started,
        )
        exchange.status = 429
        exchange.error_type = refused.code
        exchange.refused_by = refused.refused_by
        exchange.refused_from_memory = True
        exchange.waited = wait  # back-pressure, not the gateway's work
        exchange.finished_at = ended = time.perf_counter() + wait
        self.hooks.finish(exchange)
        if self.http_metrics is not None:
            self.http_metrics.duration.record(("POST", route.template, 429), ended - started)
        return b"".join(head), wait

    def release(self) -> None:
        """A refusal that waited went out (or its connection closed first)."""
        self.pacer.release()
