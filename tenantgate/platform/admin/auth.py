"""Authentication and roles of the admin API.

Tokens: the bootstrap token from ``TENANTGATE_ADMIN_TOKEN`` (role ``admin``, actor id ``bootstrap``), compared in
constant time, and named tokens created through the API, stored as an HMAC and looked up by it on every request
(so revoking one takes effect at once), or a console session cookie opened with either (platform/console/; a
write through a session also needs its CSRF token). Roles: ``admin`` may do everything; ``billing`` may read
(usage, tenants, plans, keys). ``admin`` implies ``billing``. ``tenant`` tokens belong to one tenant and pass none
of the admin API's checks: only the tenant console's routes accept them. A tenant credential (token or session)
whose tenant is suspended is refused here, once for every route, with the 403 ``tenant_suspended`` its API keys
get; one whose tenant is deleted no longer authenticates at all. Routes declare what they need with
``Depends(require_role(...))``, which returns the caller's ``AdminIdentity``; authentication runs once per request
however many routes' dependencies ask for it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.platform.console.cookies import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_ok
from tenantgate.platform.credentials import throttled
from tenantgate.platform.deps import auth_throttle_of, sessions_of, settings_of
from tenantgate.platform.errors import InvalidApiKey, PermissionDenied
from tenantgate.settings import Settings
from tenantgate.tenants.admin_tokens import token_for_plaintext
from tenantgate.tenants.auth_throttle import source_of
from tenantgate.tenants.console_sessions import find_session
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminRole, AdminToken, ConsoleSession, Tenant, TenantStatus

BOOTSTRAP_TOKEN_ID = "bootstrap"
OIDC_CREDENTIAL = "oidc"


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    token_id: str
    role: AdminRole
    tenant_id: str | None = None
    """Role ``tenant`` only: the one tenant this caller may see."""
    name: str | None = None
    """How the console names a single sign-on user (``token_id`` is what identifies them)."""

    def may(self, role: AdminRole) -> bool:
        if role == AdminRole.TENANT:
            return self.role == role
        return self.role == AdminRole.ADMIN or self.role == role


async def authenticate(request: Request) -> AdminIdentity:
    """The caller's admin identity. Failures are throttled per source (tenants/auth_throttle.py); the bootstrap
    token and a named token seen valid lately are always checked, so a guesser never locks out the real admin."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        if cookie := request.cookies.get(SESSION_COOKIE):
            return await _session_identity(request, cookie)
        source = source_of(request.scope.get("client"))
        await _failed(
            request, source, "missing", "Missing admin token: send it as Authorization: Bearer <admin token>."
        )
    return await identify_token(request, presented)


async def identify_token(request: Request, presented: str) -> AdminIdentity:
    """The identity of a presented admin, billing or tenant token (401, or 429 while its source is throttled)."""
    throttle = auth_throttle_of(request)
    settings = settings_of(request)
    source = source_of(request.scope.get("client"))
    bootstrap = settings.admin_token
    if bootstrap is not None and hmac.compare_digest(presented.encode(), bootstrap.get_secret_value().encode()):
        return AdminIdentity(BOOTSTRAP_TOKEN_ID, AdminRole.ADMIN)
    presented_hash = hash_key(settings.secret_key_bytes, presented)
    if not throttle.vouched("admin", presented_hash) and (wait := throttle.permit_lookup("admin", source)):
        raise throttled(wait)
    status = None
    async with sessions_of(request)() as session:
        token = await token_for_plaintext(session, settings.secret_key_bytes, presented)
        if token is not None and token.tenant_id is not None:
            status = await _tenant_status(session, token.tenant_id)
            if status is None:
                token = None  # the tenant was deleted: its console tokens went with it
    if token is None:
        await _failed(request, source, "invalid", "Invalid admin token.")
    assert token is not None
    throttle.vouch("admin", presented_hash)  # a valid token, even while its tenant is suspended
    _refuse_suspended(status)
    return AdminIdentity(token.id, AdminRole(token.role), token.tenant_id)


async def _tenant_status(session: AsyncSession, tenant_id: str) -> TenantStatus | None:
    """The tenant's status, None when it is gone (deleted)."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status == TenantStatus.DELETED:
        return None
    return TenantStatus(tenant.status)


def _refuse_suspended(status: TenantStatus | None) -> None:
    if status == TenantStatus.SUSPENDED:
        raise PermissionDenied("This tenant is suspended. Contact the platform operator.", code="tenant_suspended")


async def _session_identity(request: Request, cookie: str) -> AdminIdentity:
    """The identity of a console session cookie, while what opened the session is still valid."""
    settings = settings_of(request)
    secret = settings.secret_key_bytes
    status = None
    async with sessions_of(request)() as session:
        row = await find_session(session, secret, cookie)
        valid = row is not None and await _credential_valid(settings, session, row)
        if valid and row is not None and row.tenant_id is not None:
            status = await _tenant_status(session, row.tenant_id)
            valid = status is not None
    if row is None or not valid:
        source = source_of(request.scope.get("client"))
        await _failed(request, source, "invalid", "Your console session has ended; sign in again.")
    assert row is not None
    if request.method not in SAFE_METHODS and not csrf_ok(secret, cookie, request.headers.get(CSRF_HEADER)):
        raise PermissionDenied(
            "A change made with a console session needs the session's X-CSRF-Token header.", code="csrf_failed"
        )
    _refuse_suspended(status)
    if row.credential == OIDC_CREDENTIAL:
        assert row.credential_hash is not None
        return AdminIdentity(
            oidc_actor(row.credential_hash, row.subject), AdminRole(row.role), row.tenant_id, name=row.subject
        )
    return AdminIdentity(row.credential, AdminRole(row.role), row.tenant_id)


def oidc_actor(stable_id: str, name: str) -> str:
    """A single sign-on user's actor id: ``oidc:<stable id>:<name>``, at most 64 characters. The stable id (from
    the provider's issuer and subject, console/oidc.py) comes first, so cutting a long name never makes two users
    one actor; the name is only there for people to read."""
    return f"oidc:{stable_id}:{name}"[:64]


async def _credential_valid(settings: Settings, session: AsyncSession, row: ConsoleSession) -> bool:
    if row.credential == BOOTSTRAP_TOKEN_ID:
        bootstrap = settings.admin_token
        if bootstrap is None:
            return False
        current = hash_key(settings.secret_key_bytes, bootstrap.get_secret_value())
        return hmac.compare_digest(current, row.credential_hash or "")
    if row.credential == OIDC_CREDENTIAL:
        # An identity provider's sign-in: valid until the session expires. One opened before sessions kept the
        # user's stable id would be named by a name the user chose: signed in again instead.
        return row.credential_hash is not None
    token = await session.get(AdminToken, row.credential)
    return token is not None and token.revoked_at is None


def identify_bootstrap(settings: Settings, presented: str) -> AdminIdentity | None:
    """The bootstrap token (``TENANTGATE_ADMIN_TOKEN``), compared in constant time."""
    bootstrap = settings.admin_token
    if bootstrap is not None and hmac.compare_digest(presented.encode(), bootstrap.get_secret_value().encode()):
        return AdminIdentity(BOOTSTRAP_TOKEN_ID, AdminRole.ADMIN)
    return None


async def _failed(request: Request, source: str, reason: str, message: str) -> None:
    # Counted (over the limit, the next unknown tokens from this source are refused unchecked, 429), but a token
    # that was checked is answered as invalid: a 429 here would send the SDKs retrying a token that cannot work.
    await auth_throttle_of(request).failed("admin", source, reason)
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
require_tenant = require_role(AdminRole.TENANT)
AdminAccess = Annotated[AdminIdentity, Depends(require_admin)]
