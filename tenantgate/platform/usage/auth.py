"""Who may read usage, and whose.

Tenant keys (``tg-...``) and tenant console credentials (a ``tenant`` token or its console session) see their
own tenant only. Admin tokens whose role allows ``billing`` (the ``admin`` and ``billing`` roles, see
platform/admin/auth.py), or a console session opened with one, see every tenant. The billing exports under
/admin/usage take ``require_billing`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError

from tenantgate.core.principal import Principal
from tenantgate.platform.admin.auth import AdminIdentity, authenticate, identify_bootstrap
from tenantgate.platform.console.cookies import SESSION_COOKIE
from tenantgate.platform.deps import settings_of, tenant_keys_of
from tenantgate.platform.errors import InvalidApiKey, PermissionDenied, ServiceUnavailable
from tenantgate.tenants.admin_tokens import TOKEN_PREFIX
from tenantgate.tenants.keys import KEY_PREFIX
from tenantgate.tenants.models import AdminRole


@dataclass(frozen=True, slots=True)
class UsageReader:
    tenant_id: str | None
    """The only tenant this caller may see; None for platform (admin/billing) callers, who see all."""


def _presented(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("api-key", "").strip()


async def _tenant_key(request: Request, presented: str) -> Principal | None:
    try:
        return await tenant_keys_of(request).resolve(request.scope, presented)
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None


async def usage_reader(request: Request) -> UsageReader:
    """A tenant key (scoped to its tenant) or a billing-capable admin token (all tenants); 401/403 otherwise.

    The tenant auth middleware lets /v1/organization/* through unauthenticated so this can accept either.
    """
    presented = _presented(request)
    if not presented and request.cookies.get(SESSION_COOKIE):
        return _admin_reader(await authenticate(request))  # the console, signed in
    if not presented:
        raise InvalidApiKey("You didn't provide an API key. Provide it as `Authorization: Bearer YOUR_KEY`.")
    if presented.startswith(KEY_PREFIX) and not presented.startswith(TOKEN_PREFIX):
        principal = await _tenant_key(request, presented)
        if principal is not None:
            if not principal.tenant_active:
                raise PermissionDenied(
                    "This tenant is suspended. Contact the platform operator.", code="tenant_suspended"
                )
            return UsageReader(tenant_id=principal.tenant_id)
        # Not a tenant key; it may still be a bootstrap admin token that happens to look like one. A wrong tenant
        # key counted as a tenant-key failure above, not as an admin one.
        identity = identify_bootstrap(settings_of(request), presented)
        if identity is None:
            raise InvalidApiKey("Incorrect API key provided.")
    else:
        identity = await authenticate(request)
    return _admin_reader(identity)


def _admin_reader(identity: AdminIdentity) -> UsageReader:
    """Billing-capable roles read every tenant; a tenant console credential reads its own tenant only."""
    if identity.role == AdminRole.TENANT and identity.tenant_id is not None:
        return UsageReader(tenant_id=identity.tenant_id)
    if not identity.may(AdminRole.BILLING):
        raise PermissionDenied("This admin token's role may not read usage.", code="insufficient_role")
    return UsageReader(tenant_id=None)
