"""GET /v1/me: the calling key's and its tenant's limits and what is left of them right now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from tenantgate.core.principal import Principal
from tenantgate.platform.context import RequestContext, tenant_context
from tenantgate.platform.limits.responses import RateLimiterUnavailable
from tenantgate.platform.limits.view import limits_view
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants.limits.guard import LimiterUnavailable

router = APIRouter(tags=["limits"])


async def current_limits(runtime: Runtime, principal: Principal) -> dict[str, Any]:
    try:
        verdict = await runtime.limiter.peek(principal)
    except LimiterUnavailable:
        raise RateLimiterUnavailable(
            "The gateway cannot read rate limits right now. Please retry shortly.", headers={"retry-after": "1"}
        ) from None
    return limits_view(principal, verdict)


@router.get("/v1/me", summary="The calling key's and tenant's limits and remaining amounts")
async def me(request: Request, ctx: RequestContext = Depends(tenant_context)) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    return await current_limits(runtime, ctx.principal)
