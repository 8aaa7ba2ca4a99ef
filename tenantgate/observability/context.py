"""What telemetry knows about the request being served, reachable from anywhere in its task.

The telemetry middleware creates one ``RequestState`` per HTTP request and puts it in a context variable; the
exchange hook, the Redis and database span wrappers and the log formatter read it from there. The sampling
decision is taken once, in the middleware: everything else only looks at ``sampled``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanContext, TraceState
from starlette.types import Scope

from tenantgate.core.context import SCOPE_CONTEXT, SCOPE_REQUEST_ID, RequestContext

if TYPE_CHECKING:
    from tenantgate.core.exchange import Exchange


class RequestState:
    __slots__ = (
        "client_span_id",
        "exchange",
        "parent",
        "sampled",
        "scope",
        "span_context",
        "span_id",
        "started",
        "started_ns",
        "status",
        "trace_id",
        "trace_state",
    )

    def __init__(self, scope: Scope, started: float) -> None:
        self.scope = scope
        self.started = started
        self.status = 0
        self.exchange: Exchange | None = None
        self.sampled = False
        self.trace_id = 0  # also set, unsampled, when the caller sent a valid traceparent (for log correlation)
        self.span_id = 0  # the server span's id, when sampled
        self.parent: SpanContext | None = None
        self.trace_state: TraceState | None = None
        self.span_context: SpanContext | None = None
        self.started_ns = 0
        self.client_span_id = 0  # the first upstream attempt's span id, announced upstream in traceparent

    def to_ns(self, perf: float) -> int:
        """A perf_counter reading of this request as epoch nanoseconds (span timestamps)."""
        return self.started_ns + int((perf - self.started) * 1e9)

    @property
    def request_id(self) -> str | None:
        value = self.scope.get(SCOPE_REQUEST_ID)
        return value if isinstance(value, str) else None

    @property
    def context(self) -> RequestContext | None:
        ctx = self.scope.get(SCOPE_CONTEXT)
        return ctx if isinstance(ctx, RequestContext) else None


CURRENT: ContextVar[RequestState | None] = ContextVar("tenantgate_request_state", default=None)


def current() -> RequestState | None:
    return CURRENT.get()
