"""GET /v1/me: the calling key's and its tenant's limits and what is left of them right now, and its files' storage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from tenantgate.core.principal import Principal
from tenantgate.platform.context import RequestContext, tenant_context
from tenantgate.platform.deps import limiter_of, objects_of, settings_of
from tenantgate.platform.limits.responses import RateLimiterUnavailable
from tenantgate.platform.limits.view import limits_view
from tenantgate.tenants.limits.guard import LimiterUnavailable

router = APIRouter(tags=["limits"])


async def current_limits(request: Request, principal: Principal) -> dict[str, Any]:
    try:
        verdict = await limiter_of(request).peek(principal)
    except LimiterUnavailable:
        raise RateLimiterUnavailable(
            "The gateway cannot read rate limits right now. Please retry shortly.", headers={"retry-after": "1"}
        ) from None
    return limits_view(principal, verdict)


@router.get("/v1/me", summary="The calling key's and tenant's limits and remaining amounts")
async def me(request: Request, ctx: RequestContext = Depends(tenant_context)) -> dict[str, Any]:
    view = await current_limits(request, ctx.principal)
    settings = settings_of(request)
    try:
        storage = await objects_of(request).storage(ctx.principal.tenant_id)
        stores = await objects_of(request).storage(ctx.principal.tenant_id, "vector_store")
    except (SQLAlchemyError, OSError):
        view["storage"] = None  # the limits are still worth showing while the database does not answer
        return view
    view["storage"] = {
        "files": storage.files,
        "bytes": storage.bytes,
        "max_files": settings.files_max_count,
        "max_bytes": settings.files_max_storage_bytes,
        "max_file_bytes": settings.files_max_bytes,
        "vector_stores": stores.files,
        "vector_store_bytes": stores.bytes,
    }
    return view
