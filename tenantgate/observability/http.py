"""The outermost pure-ASGI layer: HTTP metrics, the SERVER span, the access log, and the request's log context.

It wraps every request, the proxy's raw-ASGI endpoints and the FastAPI routes alike, and labels them by route
template: the proxy router leaves its template in ``scope[SCOPE_ROUTE]``, FastAPI its matched route in
``scope["route"]`` (below the prefixes of the routers it was included through). Both are read after the inner app
returns, when routing has happened. Paths no route matched get an empty route, never the raw path, so a scan of
random URLs cannot blow up the label set.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantgate.core.context import SCOPE_ROUTE
from tenantgate.observability.context import CURRENT, RequestState
from tenantgate.observability.metrics import HTTP_DURATION_BUCKETS, MetricRegistry
from tenantgate.observability.tracing import Tracing

access_log = logging.getLogger("tenantgate.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


class HttpMetrics:
    def __init__(self, registry: MetricRegistry) -> None:
        self.duration = registry.histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests, by method, route template and status code",
            labels=("http.request.method", "http.route", "http.response.status_code"),
            buckets=HTTP_DURATION_BUCKETS,
        )
        self.active = registry.up_down_counter(
            "http.server.active_requests", unit="{request}", description="HTTP requests being served right now"
        )


def route_of(scope: Scope) -> str:
    template = scope.get(SCOPE_ROUTE)
    if isinstance(template, str):
        return template
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return ""
    # FastAPI >= 0.16x resolves nested include_router() lazily: the matched route's path is relative to the
    # prefixes of the routers it was included through, which FastAPI keeps in the include context.
    fastapi = scope.get("fastapi")
    included = fastapi.get("included_router") if isinstance(fastapi, dict) else None
    prefix = getattr(getattr(included, "include_context", None), "prefix", "")
    return prefix + path if isinstance(prefix, str) else path


class TelemetryMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: HttpMetrics | None, tracing: Tracing | None, log_access: bool = False
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing
        self.log_access = log_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        state = RequestState(scope, started)
        token = CURRENT.set(state)
        method = scope["method"]
        if method not in _METHODS:
            method = "_OTHER"
        tracing = self.tracing
        if tracing is not None:
            tracing.begin(state, method)
        metrics = self.metrics
        if metrics is not None:
            metrics.active.value += 1

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except asyncio.CancelledError:
            state.status = state.status or 499  # the client went away before an answer started
            raise
        except BaseException:
            state.status = state.status or 500
            raise
        finally:
            ended = perf_counter()
            route = route_of(scope)
            if metrics is not None:
                metrics.active.value -= 1
                metrics.duration.record((method, route, state.status), ended - started)
            if state.sampled and tracing is not None:
                tracing.end_server(state, method, route, ended)
            if self.log_access:
                _log_access(state, method, route, ended - started)
            CURRENT.reset(token)


def _log_access(state: RequestState, method: str, route: str, seconds: float) -> None:
    access_log.info(
        "%s %s %s",
        method,
        state.scope["path"],
        state.status,
        extra={
            "http_method": method,
            "http_route": route,
            "url_path": state.scope["path"],
            "status": state.status,
            "duration_ms": round(seconds * 1000, 3),
        },
    )
