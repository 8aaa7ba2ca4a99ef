"""Who may read usage, and whose.

Tenant keys see their own tenant only. Platform tokens with a billing-capable role see every tenant; today that
is the admin token. ``require_billing`` is the one place a ``billing`` role is added when roles land.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError

from tenantgate.platform.admin.auth import require_admin
from tenantgate.platform.errors import InvalidApiKey, PermissionDenied, ServiceUnavailable
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants.keys import hash_key


def require_billing(request: Request) -> None:
    """Admin or billing token; raises InvalidApiKey otherwise."""
    require_admin(request)


@dataclass(frozen=True, slots=True)
class UsageReader:
    tenant_id: str | None
    """The only tenant this caller may see; None for platform (admin/billing) callers, who see all."""


def _presented(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("api-key", "").strip()


async def usage_reader(request: Request) -> UsageReader:
    """A tenant key (scoped to its tenant) or a platform token (all tenants); 401/403 otherwise.

    The tenant auth middleware lets /v1/organization/* through unauthenticated so this can accept either.
    """
    presented = _presented(request)
    if not presented:
        raise InvalidApiKey("You didn't provide an API key. Provide it as `Authorization: Bearer YOUR_KEY`.")
    try:
        require_billing(request)
    except InvalidApiKey:
        pass
    else:
        return UsageReader(tenant_id=None)
    runtime: Runtime = request.app.state.runtime
    try:
        principal = await runtime.key_cache.get(hash_key(runtime.settings.secret_key_bytes, presented))
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None
    if principal is None or (principal.expires_at is not None and principal.expires_at <= time.time()):
        raise InvalidApiKey("Incorrect API key provided.")
    if not principal.tenant_active:
        raise PermissionDenied("This tenant is suspended. Contact the platform operator.", code="tenant_suspended")
    return UsageReader(tenant_id=principal.tenant_id)
