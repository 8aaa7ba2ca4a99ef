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

What is the same from one refusal to the next is not made again: the status line with uvicorn's default headers
(until its next tick), and a window's headers and body for as long as the wait they say, in ms, is the same (a flood
brings several refusals a millisecond); request ids come from one read of the random source per 256. Only the
request id is joined in per refusal (docs/performance.md has what that saved).

The answer is the ASGI path's, header for header (``tests/platform/test_refusal_lane.py`` compares the two). What
differs, by decision: such a refusal opens no trace span unless the request carries a ``traceparent`` (those take
the ASGI path, so a traced caller still sees its span), and with the access log on every request takes the ASGI
path (each request is logged there).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

from tenantgate.core.exchange import Exchange
from tenantgate.observability.http import HttpMetrics
from tenantgate.platform.context import RequestContext
from tenantgate.platform.credentials import TenantKeys
from tenantgate.platform.limits.known import Known, KnownRefusals, LocallyRefused
from tenantgate.platform.limits.pacing import RefusalPacer
from tenantgate.platform.limits.responses import format_duration
from tenantgate.platform.middleware import presented_key, valid_request_id
from tenantgate.platform.proxy.hooks import Hooks
from tenantgate.platform.proxy.routes import COUNT_INPUT_TOKENS, CREATE_ROUTES, Route
from tenantgate.tenants.last_used import LastUsedTracker

_STATUS_LINE = b"HTTP/1.1 429 Too Many Requests\r\n"
_IDS_AT_ONCE = 256
"""Request ids drawn from one read of the system's random source (16 bytes each, as the ASGI path's)."""


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
        self.paths: dict[bytes, tuple[Route, tuple[str, str, int]]] = {
            path.encode(): (route, ("POST", route.template, 429))
            for path, route in CREATE_ROUTES.items()
            if route.body != "none"
        }
        self._defaults: tuple[Sequence[tuple[bytes, bytes]] | None, bytes] = (None, b"")
        """uvicorn's default headers (a new list each tick: the date) and the status line with them, rendered."""
        self._ids = b""
        self._next_id = 0

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
        found = self.paths.get(url)
        if found is None or method != b"POST":
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
        now = self.known.clock()
        known = self.known.find(principal, now)
        if known is None:
            return None
        if not valid_request_id(request_id):
            request_id = self._new_request_id()
        self.answered += 1
        self.last_used.touch(principal.key_id)
        wait_ms, before_id, after_id = self._render(known, now)
        defaults, status_and_defaults = self._defaults
        if defaults is not default_headers:
            status_and_defaults = _STATUS_LINE + b"".join(
                b"%s: %s\r\n" % (name, value) for name, value in default_headers
            )
            self._defaults = (default_headers, status_and_defaults)
        response = b"".join((status_and_defaults, before_id, request_id, after_id))
        wait = self.pacer.hold(principal.key_id, started, wait_ms / 1000)

        route, labels = found
        exchange = Exchange(
            ctx=RequestContext(request_id=request_id.decode(), principal=principal),
            operation=route.operation,
            path=route.template,
            model_work=route is not COUNT_INPUT_TOKENS,
            started=started,
        )
        exchange.status = 429
        exchange.error_type = LocallyRefused.code
        exchange.refused_by = known.refused_by
        exchange.refused_from_memory = True
        exchange.waited = wait  # back-pressure, not the gateway's work
        exchange.finished_at = ended = time.perf_counter() + wait
        self.hooks.finish(exchange)
        if self.http_metrics is not None:
            self.http_metrics.duration.record(labels, ended - started)
        return response, wait

    @staticmethod
    def _render(known: Known, now: float) -> tuple[int, bytes, bytes]:
        """The refusal's wait in ms and its wire bytes before and after the request id: the ASGI path's headers
        (``LocallyRefused``) in its order. Reused from the last refusal of the same window if that said the same
        wait (a flood brings several a millisecond)."""
        wait_ms = known.wait_ms(now)
        rendered = known.rendered
        if rendered is not None and rendered[0] == wait_ms:
            return rendered
        wait = format_duration(wait_ms).encode()
        body = known.head + wait + known.tail
        before_id = b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: " % len(body)
        after_id = b"\r\nretry-after: %d\r\nretry-after-ms: %d\r\n" % (max(1, math.ceil(wait_ms / 1000)), wait_ms)
        if known.limit_header:
            after_id += b"x-ratelimit-limit-requests: %s\r\nx-ratelimit-remaining-requests: 0\r\n" % (
                known.limit_header.encode()
            )
            after_id += b"x-ratelimit-reset-requests: %s\r\n" % wait
        known.rendered = rendered = (wait_ms, before_id, after_id + b"\r\n" + body)
        return rendered

    def _new_request_id(self) -> bytes:
        """``req_`` and 32 hex digits of the system's random source, as the ASGI path makes one; read 256 at a time
        (one system call instead of one a refusal)."""
        at = self._next_id
        if at == len(self._ids):
            self._ids, at = os.urandom(16 * _IDS_AT_ONCE).hex().encode(), 0
        self._next_id = at + 32
        return b"req_" + self._ids[at : at + 32]

    def release(self) -> None:
        """A refusal that waited went out (or its connection closed first)."""
        self.pacer.release()
