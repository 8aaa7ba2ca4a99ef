"""``/console``: the web console's page, its built assets, and signing in and out.

The page and its assets are public and hold no data. Signing in exchanges a token (admin, billing, tenant or the
bootstrap one) or an OpenID Connect sign-in (oidc.py) for a session cookie (cookies.py); from then on the console
calls the admin API, the usage API and its own JSON routes (sre.py, portal.py) with that cookie, and every route
checks the caller's role on the server. Every response forbids framing, inline scripts and referrers
(headers.py adds those headers to every response under ``/console``, errors included).
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tenantgate.platform.admin.auth import (
    BOOTSTRAP_TOKEN_ID,
    AdminIdentity,
    authenticate,
    identify_token,
)
from tenantgate.platform.console.cookies import CSRF_HEADER, SESSION_COOKIE, csrf_ok, csrf_token
from tenantgate.platform.console.headers import CONSOLE_PATH as CONSOLE_PATH
from tenantgate.platform.deps import sessions_of, settings_of
from tenantgate.platform.errors import BadRequest, NotFound, PermissionDenied
from tenantgate.tenants.console_sessions import close_session, open_session
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminToken, Tenant

router = APIRouter(tags=["console"], include_in_schema=False)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css",
    ".png": "image/png",
}
_STATIC = resources.files("tenantgate.platform.console").joinpath("static")
# The build's files, read once: a name not in this set is a 404 whatever it contains (``..``, encoded slashes).
ASSETS = {
    entry.name: _TYPES[suffix]
    for entry in _STATIC.iterdir()
    if entry.is_file() and (suffix := "." + entry.name.rsplit(".", 1)[-1]) in _TYPES and entry.name != "index.html"
}


def _file(name: str, media_type: str) -> Response:
    # Revalidated on every load, so a new build is seen at once; everything else of the console is no-store.
    headers = {"Cache-Control": "no-cache"}
    return Response(_STATIC.joinpath(name).read_bytes(), media_type=media_type, headers=headers)


@router.get(CONSOLE_PATH, response_class=Response)
async def page() -> Response:
    return _file("index.html", _TYPES[".html"])


@router.get(CONSOLE_PATH + "/assets/{name}", response_class=Response)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"No console asset {name!r}.")
    return _file(name, ASSETS[name])


@router.get("/dashboard", response_class=Response)
async def old_dashboard() -> Response:
    """The console replaced the dashboard: old bookmarks land there."""
    return RedirectResponse(CONSOLE_PATH, status_code=308)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=512)


async def _subject(request: Request, identity: AdminIdentity) -> tuple[str, str | None]:
    """A name to show for the signed-in identity, and the tenant's name for a tenant session."""
    async with sessions_of(request)() as session:
        token = await session.get(AdminToken, identity.token_id)
        tenant = await session.get(Tenant, identity.tenant_id) if identity.tenant_id else None
    subject = token.name if token is not None else identity.token_id
    return subject, tenant.name if tenant is not None else None


@router.post(CONSOLE_PATH + "/api/session", response_class=Response)
async def sign_in(body: SignIn, request: Request) -> Response:
    """Exchange a token for a session cookie. Guessing is throttled exactly like the admin API's bearer tokens."""
    presented = body.token.strip()
    identity = await identify_token(request, presented)
    credential_hash = None
    if identity.token_id == BOOTSTRAP_TOKEN_ID:
        # The session ends when the bootstrap token is changed: it remembers which one opened it.
        credential_hash = hash_key(settings_of(request).secret_key_bytes, presented)
    subject, _ = await _subject(request, identity)
    value, lifetime = await create_session(request, identity, subject, identity.token_id, credential_hash)
    response = JSONResponse({"role": identity.role.value, "tenant_id": identity.tenant_id})
    set_session_cookie(response, value, lifetime)
    return response


async def create_session(
    request: Request, identity: AdminIdentity, subject: str, credential: str, credential_hash: str | None
) -> tuple[str, timedelta]:
    """A new session's cookie value and lifetime."""
    lifetime = timedelta(hours=settings_of(request).console_session_hours)
    async with sessions_of(request)() as session:
        value = await open_session(
            session,
            settings_of(request).secret_key_bytes,
            role=identity.role,
            subject=subject,
            credential=credential,
            credential_hash=credential_hash,
            tenant_id=identity.tenant_id,
            lifetime=lifetime,
        )
        await session.commit()
    return value, lifetime


def set_session_cookie(response: Response, value: str, lifetime: timedelta) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(lifetime.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


@router.get(CONSOLE_PATH + "/api/session")
async def who_am_i(request: Request, identity: AdminIdentity = Depends(authenticate)) -> Response:
    """The signed-in identity, what the console may show it, and the CSRF token its writes must carry."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        raise BadRequest("This route describes a console session; sign in through the console.", code="no_session")
    settings = settings_of(request)
    subject, tenant_name = await _subject(request, identity)
    body: dict[str, Any] = {
        "role": identity.role.value,
        "subject": identity.name or subject,
        "tenant_id": identity.tenant_id,
        "tenant_name": tenant_name,
        "csrf_token": csrf_token(settings.secret_key_bytes, cookie),
        "grafana_url": settings.console_grafana_url or None,
        "prometheus": bool(settings.console_prometheus_url),
        "metrics_enabled": settings.metrics_enabled,
    }
    return JSONResponse(body)


@router.delete(CONSOLE_PATH + "/api/session", response_class=Response)
async def sign_out(request: Request) -> Response:
    """End the caller's session. Holding its cookie (and its CSRF token) is enough: a session whose tenant was
    suspended, or whose credential was revoked, can still be ended."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        await authenticate(request)  # a bearer token: nothing to end, but an unknown caller is still a 401
    else:
        secret = settings_of(request).secret_key_bytes
        if not csrf_ok(secret, cookie, request.headers.get(CSRF_HEADER)):
            raise PermissionDenied(
                "A change made with a console session needs the session's X-CSRF-Token header.", code="csrf_failed"
            )
        async with sessions_of(request)() as session:
            await close_session(session, secret, cookie)
            await session.commit()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get(CONSOLE_PATH + "/api/config")
async def sign_in_options(request: Request) -> Response:
    """What the sign-in page offers (public: no data)."""
    return JSONResponse({"oidc": bool(settings_of(request).console_oidc_issuer)})
