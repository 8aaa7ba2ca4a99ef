"""Reading the request context in the platform's code (the context itself is in ``core/context.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from tenantgate.core.context import SCOPE_CONTEXT as SCOPE_CONTEXT
from tenantgate.core.context import SCOPE_REQUEST_ID as SCOPE_REQUEST_ID
from tenantgate.core.context import SCOPE_ROUTE as SCOPE_ROUTE
from tenantgate.core.context import RequestContext as RequestContext


def request_id_of(scope: Scope) -> str:
    return str(scope.get(SCOPE_REQUEST_ID, ""))


def tenant_context(request: Request) -> RequestContext:
    """FastAPI dependency for /v1 routes served by FastAPI (the auth middleware has run)."""
    ctx = request.scope.get(SCOPE_CONTEXT)
    assert isinstance(ctx, RequestContext), "tenant auth middleware did not run for this route"
    return ctx
