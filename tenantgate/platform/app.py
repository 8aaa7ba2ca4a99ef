"""Application factory: FastAPI for the admin/ops/docs surface, raw ASGI layers for the proxy hot path."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tenantgate import __version__
from tenantgate.platform import ops
from tenantgate.platform.admin.routes import router as admin_router
from tenantgate.platform.errors import install_handlers
from tenantgate.platform.middleware import RequestIdMiddleware, TenantAuthMiddleware
from tenantgate.platform.proxy.router import ProxyRouter
from tenantgate.platform.runtime import Runtime
from tenantgate.platform.usage import export as usage_export
from tenantgate.platform.usage import routes as usage_routes
from tenantgate.settings import Settings

log = logging.getLogger("tenantgate")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            runtime.shutting_down = True
            await runtime.close()

    app = FastAPI(
        title="tenantgate",
        version=__version__,
        summary="Multi-tenant gateway for OpenAI-compatible APIs",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_handlers(app)
    app.include_router(ops.router)
    app.include_router(admin_router)
    app.include_router(usage_routes.router)
    app.include_router(usage_export.router)

    # Outermost last: RequestId -> TenantAuth -> ProxyRouter -> FastAPI routes.
    app.add_middleware(ProxyRouter, runtime=runtime)
    app.add_middleware(TenantAuthMiddleware, runtime=runtime)
    app.add_middleware(RequestIdMiddleware)
    return app
