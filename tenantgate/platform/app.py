"""Application factory: raw ASGI layers for the proxy hot path, FastAPI for the admin/usage/ops/docs surface.

The proxy never passes through FastAPI: ``GatewayApp`` sends ``/v1/...`` straight into the raw pipeline, which
falls through to FastAPI only for paths it does not serve (the usage API, ``/v1/me``, OpenAI-shaped 404s).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate import __version__, tokens
from tenantgate.observability.http import TelemetryMiddleware
from tenantgate.platform import interpreter, metrics, ops
from tenantgate.platform.admin.limits import router as admin_limits_router
from tenantgate.platform.admin.routes import router as admin_router
from tenantgate.platform.admin.upstream_keys import router as upstream_keys_router
from tenantgate.platform.bounded_http import BufferedBodyMiddleware
from tenantgate.platform.console import apidocs as console_apidocs
from tenantgate.platform.console import oidc as console_oidc
from tenantgate.platform.console import portal as console_portal
from tenantgate.platform.console import routes as console_routes
from tenantgate.platform.console import sre as console_sre
from tenantgate.platform.console.headers import ConsoleHeadersMiddleware
from tenantgate.platform.deps import COMPONENTS
from tenantgate.platform.errors import install_handlers
from tenantgate.platform.http_protocol import HttpLimits
from tenantgate.platform.iplimit import KnownCredentials, SurfaceIpLimitMiddleware
from tenantgate.platform.limits.routes import router as limits_router
from tenantgate.platform.metrics_listener import MetricsListener
from tenantgate.platform.middleware import RequestIdMiddleware, TenantAuthMiddleware
from tenantgate.platform.nulguard import NulGuardMiddleware
from tenantgate.platform.proxy.router import ProxyRouter
from tenantgate.platform.runtime import Runtime
from tenantgate.platform.shutdown import install_drain_handler
from tenantgate.platform.usage import export as usage_export
from tenantgate.platform.usage import routes as usage_routes
from tenantgate.settings import Settings

log = logging.getLogger("tenantgate")


class GatewayApp:
    """The ASGI application uvicorn serves."""

    def __init__(self, api: FastAPI, runtime: Runtime) -> None:
        self.api = api
        self.runtime = runtime
        self.state = api.state
        self.refusal_lane = runtime.refusal_lane
        """Found by the HTTP protocol (platform/http_protocol.py): refusals from memory answered before this app."""
        # Outermost first: RequestId -> NulGuard -> TenantAuth -> ProxyRouter (-> FastAPI for what it does not serve).
        # Every response of the proxy path carries x-request-id already; FastAPI's RequestId tags its own.
        self.proxy: ASGIApp = RequestIdMiddleware(
            NulGuardMiddleware(
                TenantAuthMiddleware(ProxyRouter(api, runtime.proxy), runtime.tenant_keys, runtime.last_used)
            ),
            tag_responses=False,
        )
        # Telemetry wraps both ways in: every request is measured, proxied or not.
        telemetry = runtime.telemetry
        self.app = TelemetryMiddleware(self.dispatch, telemetry.http, telemetry.tracing, runtime.settings.access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.proxy(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def create_app(settings: Settings | None = None) -> GatewayApp:
    settings = settings or Settings()
    tokens.configure(settings.token_estimates)
    if settings.interpreter_tuning:
        interpreter.cap_malloc_arenas()
        interpreter.fix_malloc_thresholds()
    runtime = Runtime(settings)

    metrics_listener = (
        MetricsListener(
            runtime.telemetry, settings.metrics_host, settings.metrics_port, HttpLimits.from_settings(settings)
        )
        if settings.metrics_port
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if metrics_listener is not None:
            await metrics_listener.start()
        restore_signal = install_drain_handler(runtime.begin_shutdown, settings.shutdown_drain_seconds)
        try:
            yield
        finally:
            restore_signal()
            runtime.begin_shutdown()
            if metrics_listener is not None:
                await metrics_listener.close()
            await runtime.close()

    app = FastAPI(
        title="tenantgate",
        version=__version__,
        summary="Multi-tenant gateway for OpenAI-compatible APIs",
        lifespan=lifespan,
        docs_url=None,  # console_apidocs serves /docs with Swagger UI's files from the package, not a CDN
        redoc_url=None,  # ReDoc would load from a CDN: /docs (offline) is the one API page
    )
    # What the FastAPI surface may use, one component each (platform/deps.py); routes never see the whole runtime.
    for name in COMPONENTS:
        setattr(app.state, name, getattr(runtime, name))
    install_handlers(app)
    app.include_router(ops.router)
    app.include_router(metrics.router)
    app.include_router(admin_router)
    app.include_router(upstream_keys_router)
    app.include_router(admin_limits_router)
    app.include_router(limits_router)
    app.include_router(console_routes.router)
    app.include_router(console_sre.router)
    app.include_router(console_portal.router)
    app.include_router(console_oidc.router)
    app.include_router(console_apidocs.router)
    app.include_router(usage_routes.router)
    app.include_router(usage_export.router)

    # For requests reaching FastAPI directly (admin, ops, docs); both skip work already done by GatewayApp.proxy.
    # SurfaceIpLimit throttles the admin and usage surface per client IP (before admin auth is checked).
    app.add_middleware(TenantAuthMiddleware, keys=runtime.tenant_keys, last_used=runtime.last_used)
    app.add_middleware(NulGuardMiddleware)  # 400 for %00 in the URL: Postgres text cannot hold it
    app.add_middleware(BufferedBodyMiddleware, limit=settings.max_admin_body_bytes)  # 413/408 in OpenAI's shape
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
    known = KnownCredentials(runtime.auth_throttle, settings.secret_key_bytes, admin_token)
    app.add_middleware(SurfaceIpLimitMiddleware, limit=settings.admin_ip_rate_limit, known=known)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ConsoleHeadersMiddleware)  # outermost: even the layers' own refusals carry the headers
    return GatewayApp(app, runtime)
