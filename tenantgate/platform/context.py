"""The per-request context the pipeline resolves once and everything downstream reads."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Scope

from tenantgate.tenants.principal import Principal

SCOPE_CONTEXT = "tenantgate.context"
SCOPE_REQUEST_ID = "tenantgate.request_id"
# The route template a raw-ASGI endpoint served (FastAPI routes leave theirs in scope["route"]).
SCOPE_ROUTE = "tenantgate.route"


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    principal: Principal


def request_id_of(scope: Scope) -> str:
    return str(scope.get(SCOPE_REQUEST_ID, ""))


def tenant_context(request: Request) -> RequestContext:
    """FastAPI dependency for /v1 routes served by FastAPI (the auth middleware has run)."""
    ctx = request.scope.get(SCOPE_CONTEXT)
    assert isinstance(ctx, RequestContext), "tenant auth middleware did not run for this route"
    return ctx
