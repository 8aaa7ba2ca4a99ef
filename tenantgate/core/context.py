"""The per-request context the pipeline resolves once and everything downstream reads, and the ASGI scope keys it
is kept under."""

from __future__ import annotations

from dataclasses import dataclass

from tenantgate.core.principal import Principal

SCOPE_CONTEXT = "tenantgate.context"
SCOPE_REQUEST_ID = "tenantgate.request_id"
# The route template a raw-ASGI endpoint served (FastAPI routes leave theirs in scope["route"]).
SCOPE_ROUTE = "tenantgate.route"


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    principal: Principal
