"""Authentication and roles of the admin API.

Tokens: the bootstrap token from ``TENANTGATE_ADMIN_TOKEN`` (role ``admin``, actor id ``bootstrap``), compared in
constant time, and named tokens created through the API, stored as an HMAC and looked up by it on every request
(so revoking one takes effect at once). Roles: ``admin`` may do everything; ``billing`` may read (usage, tenants,
plans, keys). ``admin`` implies ``billing``. Routes declare what they need with ``Depends(require_role(...))``,
which returns the caller's ``AdminIdentity``; authentication runs once per request however many routes'
dependencies ask for it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tenantgate.platform.credentials import throttled
from tenantgate.platform.errors import InvalidApiKey, PermissionDenied
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants.admin_tokens import token_for_plaintext
from tenantgate.tenants.auth_throttle import source_of
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminRole

BOOTSTRAP_TOKEN_ID = "bootstrap"


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    token_id: str
    role: AdminRole

    def may(self, role: AdminRole) -> bool:
        return self.role == AdminRole.ADMIN or self.role == role


async def authenticate(request: Request) -> AdminIdentity:
    """The caller's admin identity. Failures are throttled per source (tenants/auth_throttle.py); the bootstrap
    token and a named token seen valid lately are always checked, so a guesser never locks out the real admin."""
    runtime: Runtime = request.app.state.runtime
    throttle = runtime.auth_throttle
    source = source_of(request.scope.get("client"))
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        await _failed(
            runtime, source, "missing", "Missing admin token: send it as Authorization: Bearer <admin token>."
        )
    bootstrap = runtime.settings.admin_token
    if bootstrap is not None and hmac.compare_digest(presented.encode(), bootstrap.get_secret_value().encode()):
        return AdminIdentity(BOOTSTRAP_TOKEN_ID, AdminRole.ADMIN)
    presented_hash = hash_key(runtime.settings.secret_key_bytes, presented)
    if not throttle.vouched("admin", presented_hash) and (wait := throttle.permit_lookup("admin", source)):
        raise throttled(wait)
    async with runtime.sessions() as session:
        token = await token_for_plaintext(session, runtime.settings.secret_key_bytes, presented)
    if token is None:
        await _failed(runtime, source, "invalid", "Invalid admin token.")
    assert token is not None
    throttle.vouch("admin", presented_hash)
    return AdminIdentity(token.id, AdminRole(token.role))


def identify_bootstrap(runtime: Runtime, presented: str) -> AdminIdentity | None:
    """The bootstrap token (``TENANTGATE_ADMIN_TOKEN``), compared in constant time."""
    bootstrap = runtime.settings.admin_token
    if bootstrap is not None and hmac.compare_digest(presented.encode(), bootstrap.get_secret_value().encode()):
        return AdminIdentity(BOOTSTRAP_TOKEN_ID, AdminRole.ADMIN)
    return None


async def _failed(runtime: Runtime, source: str, reason: str, message: str) -> None:
    wait = await runtime.auth_throttle.failed("admin", source, reason)
    if wait is not None:
        raise throttled(wait)
    raise InvalidApiKey(message)


def _role_dependency(role: AdminRole) -> Callable[..., Awaitable[AdminIdentity]]:
    async def dependency(identity: AdminIdentity = Depends(authenticate)) -> AdminIdentity:
        if not identity.may(role):
            raise PermissionDenied(
                f"This admin token has the {identity.role.value!r} role; this operation needs {role.value!r}.",
                code="insufficient_role",
            )
        return identity

    dependency.__name__ = f"require_{role.value}"
    return dependency


_ROLE_DEPENDENCIES = {role: _role_dependency(role) for role in AdminRole}


def require_role(role: AdminRole | str) -> Callable[..., Awaitable[AdminIdentity]]:
    """FastAPI dependency: the caller's identity if its role allows ``role`` (401/403/429 otherwise)."""
    return _ROLE_DEPENDENCIES[AdminRole(role)]


require_admin = require_role(AdminRole.ADMIN)
require_billing = require_role(AdminRole.BILLING)
AdminAccess = Annotated[AdminIdentity, Depends(require_admin)]
