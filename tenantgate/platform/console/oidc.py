"""Single sign-on to the console with any OpenID Connect provider (authorization code flow with PKCE).

``/console/oidc/login`` sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE verifier,
kept in a short-lived cookie signed with the server secret (``SameSite=Lax``: the provider's redirect back is a
top-level navigation from another site, which a ``Strict`` cookie would not survive). ``/console/oidc/callback``
checks the state, exchanges the code for tokens at the provider's token endpoint, verifies the ID token's
signature against the provider's published keys (joserfc, authlib's JOSE library) and its claims (issuer,
audience, expiry, nonce), then maps the user's groups to a console role with ``TENANTGATE_CONSOLE_OIDC_ROLES``:
the most powerful role any of the user's groups grants wins; a user in none of them is refused. The session that
follows is the same as a token sign-in's (routes.py), valid until it expires.

The audit log names the user by the provider's stable identity: ``oidc:<hash of issuer and subject>:<name>``,
where the name (a verified email, else the username, else the subject) is only for people to read, so two
users who pick the same username stay two actors. A flow (its ``state``) is used once: a replayed callback is
refused before anything is sent to the provider. A refused sign-in sends the browser back with a code from
``REFUSALS``, never with text: the page shows its own words for the code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tenantgate.platform.admin.auth import AdminIdentity, oidc_actor
from tenantgate.platform.console.routes import CONSOLE_PATH, create_session, set_session_cookie
from tenantgate.platform.deps import sessions_of, settings_of
from tenantgate.platform.errors import NotFound
from tenantgate.settings import Settings
from tenantgate.tenants.models import AdminRole, Tenant, TenantStatus

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

log = logging.getLogger("tenantgate.console")
router = APIRouter(prefix=CONSOLE_PATH + "/oidc", tags=["console"], include_in_schema=False)

FLOW_COOKIE = "__Host-tenantgate-oidc"
_FLOW_SECONDS = 600
_DISCOVERY_SECONDS = 3600
_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
REFUSALS = frozenset(
    {"provider_unreachable", "provider_refused", "flow_invalid", "sign_in_failed", "no_role", "tenant_gone"}
)
"""What ``/console?sign_in_error=`` may carry (console/src/main.ts has the words for each)."""


class SignInRefused(Exception):
    """Why a sign-in did not become a session: a code of ``REFUSALS``, and the details for the log."""

    def __init__(self, code: str, detail: str) -> None:
        assert code in REFUSALS
        super().__init__(detail)
        self.code = code


class UsedFlows:
    """The flows whose callback came back already (by a hash of their state), until they would have expired.

    Per process: with several workers a replay may reach another one once, which the surface throttle
    (platform/iplimit.py) bounds like every other guess."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def claim(self, state: str, expires: float) -> bool:
        """True the first time a flow's state is seen, False for every replay."""
        now = time.time()
        if len(self._used) > 1024:
            self._used = {key: until for key, until in self._used.items() if until > now}
        key = hashlib.sha256(state.encode()).hexdigest()
        if key in self._used:
            return False
        self._used[key] = max(expires, now)
        return True


def _configured(request: Request) -> Settings:
    """The settings, when single sign-on is configured; 404 otherwise."""
    settings = settings_of(request)
    if not settings.console_oidc_issuer:
        raise NotFound("Single sign-on is not configured (TENANTGATE_CONSOLE_OIDC_ISSUER).")
    return settings


def _sign(secret: bytes, payload: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")
    mac = hmac.new(secret, b"console-oidc:" + body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _unsign(secret: bytes, value: str) -> dict[str, Any] | None:
    body, _, mac = value.rpartition(".")
    expected = hmac.new(secret, b"console-oidc:" + body.encode(), hashlib.sha256).hexdigest()
    if not body or not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(payload, dict) or float(payload.get("exp", 0)) < time.time():
        return None
    return payload


def _s256(verifier: str) -> str:
    """PKCE's S256 code challenge (RFC 7636 section 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _redirect_uri(request: Request) -> str:
    return str(request.base_url).rstrip("/") + CONSOLE_PATH + "/oidc/callback"


class Provider:
    """The provider's discovery document and keys, fetched when first needed and kept for an hour."""

    def __init__(self) -> None:
        self._config: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._fetched = 0.0

    async def config(self, settings: Settings) -> dict[str, Any]:
        if self._config is None or time.monotonic() - self._fetched > _DISCOVERY_SECONDS:
            issuer = settings.console_oidc_issuer.rstrip("/")
            self._config = await _get_json(issuer + "/.well-known/openid-configuration")
            self._keys = None
            self._fetched = time.monotonic()
        return self._config

    async def keys(self, settings: Settings, *, refresh: bool = False) -> KeySet:
        from joserfc.jwk import KeySet  # loaded on first use, like everything of single sign-on

        if self._keys is None or refresh:
            config = await self.config(settings)
            self._keys = KeySet.import_key_set(await _get_json(str(config["jwks_uri"])))  # type: ignore[arg-type]
        return self._keys


async def _get_json(url: str) -> dict[str, Any]:
    import aiohttp  # loaded on first use: most workers never see a sign-in (tests/test_footprint.py)

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client,
        client.get(url, allow_redirects=False) as response,
    ):
        if response.status != 200:
            raise SignInRefused("provider_unreachable", f"the identity provider answered {response.status} at {url}")
        data = await response.json(content_type=None)
    if not isinstance(data, dict):
        raise SignInRefused("provider_unreachable", "the identity provider's answer was not a JSON object")
    return data


def _provider(request: Request) -> Provider:
    provider = getattr(request.app.state, "console_oidc", None)
    if provider is None:
        provider = request.app.state.console_oidc = Provider()
    return provider


def _used_flows(request: Request) -> UsedFlows:
    used = getattr(request.app.state, "console_oidc_flows", None)
    if used is None:
        used = request.app.state.console_oidc_flows = UsedFlows()
    return used


def _refused(code: str) -> Response:
    response = RedirectResponse(f"{CONSOLE_PATH}?{urlencode({'sign_in_error': code})}", status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@router.get("/login", response_class=Response)
async def login(request: Request) -> Response:
    import aiohttp

    settings = _configured(request)
    try:
        config = await _provider(request).config(settings)
    except (SignInRefused, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("console: the identity provider's discovery failed: %s", exc)
        return _refused("provider_unreachable")
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": settings.console_oidc_client_id,
        "redirect_uri": _redirect_uri(request),
        "scope": settings.console_oidc_scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": _s256(verifier),
        "code_challenge_method": "S256",
    }
    response = RedirectResponse(f"{config['authorization_endpoint']}?{urlencode(query)}", status_code=303)
    flow = {"state": state, "nonce": nonce, "verifier": verifier, "exp": time.time() + _FLOW_SECONDS}
    response.set_cookie(
        FLOW_COOKIE,
        _sign(settings.secret_key_bytes, flow),
        max_age=_FLOW_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/callback", response_class=Response)
async def callback(request: Request) -> Response:
    import aiohttp

    settings = _configured(request)
    params = request.query_params
    if "error" in params:
        return _refused("provider_refused")  # the provider's words are not shown: anyone can put any in a link
    flow = _unsign(settings.secret_key_bytes, request.cookies.get(FLOW_COOKIE, ""))
    if flow is None or not hmac.compare_digest(str(flow["state"]), params.get("state", "")):
        return _refused("flow_invalid")
    if not _used_flows(request).claim(str(flow["state"]), float(flow["exp"])):
        return _refused("flow_invalid")  # a replayed callback: the provider is not asked again
    try:
        claims = await _claims(request, params.get("code", ""), flow)
        identity, subject = await _identity(request, claims)
    except SignInRefused as refused:
        log.info("console: OpenID Connect sign-in refused (%s): %s", refused.code, refused)
        return _refused(refused.code)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        log.warning("console: OpenID Connect sign-in failed: %s", type(exc).__name__)
        return _refused("sign_in_failed")
    response = RedirectResponse(CONSOLE_PATH, status_code=303)
    value, lifetime = await create_session(request, identity, subject, "oidc", stable_id(claims))
    set_session_cookie(response, value, lifetime)
    response.delete_cookie(FLOW_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


async def _claims(request: Request, code: str, flow: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    from joserfc import jwt
    from joserfc.errors import JoseError

    settings = settings_of(request)
    provider = _provider(request)
    config = await provider.config(settings)
    secret = settings.console_oidc_client_secret
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(request),
        "client_id": settings.console_oidc_client_id,
        "code_verifier": str(flow["verifier"]),
    }
    if secret is not None:
        form["client_secret"] = secret.get_secret_value()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client,
        client.post(str(config["token_endpoint"]), data=form, allow_redirects=False) as response,
    ):
        tokens = await response.json(content_type=None)
        if response.status != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
            raise SignInRefused("sign_in_failed", f"no ID token from the token endpoint ({response.status})")
    id_token = str(tokens["id_token"])
    try:
        token = jwt.decode(id_token, await provider.keys(settings), algorithms=_ALGORITHMS)
    except JoseError:
        # The provider may have rotated its keys since they were read: read them again, once.
        try:
            token = jwt.decode(id_token, await provider.keys(settings, refresh=True), algorithms=_ALGORITHMS)
        except JoseError:
            raise SignInRefused("sign_in_failed", "the ID token's signature did not verify") from None
    registry = jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": str(config.get("issuer", settings.console_oidc_issuer))},
        aud={"essential": True, "value": settings.console_oidc_client_id},
        exp={"essential": True},
        sub={"essential": True},
        nonce={"essential": True, "value": str(flow["nonce"])},
    )
    try:
        registry.validate(token.claims)
    except JoseError as error:
        raise SignInRefused("sign_in_failed", f"the ID token was not valid ({error.error})") from None
    return dict(token.claims)


_RANK = {AdminRole.ADMIN: 0, AdminRole.BILLING: 1, AdminRole.TENANT: 2}


def _subject(claims: dict[str, Any]) -> str:
    """A name for people to read. An address the provider has not verified is whatever the user typed into their
    profile (anyone's address), so it is not used: then the username, or the provider's own subject id. Neither
    identifies the user (usernames are the user's to choose at many providers): ``actor_id`` does."""
    verified = claims.get("email_verified")
    email = claims.get("email") if verified is True or verified == "true" else None
    return str(email or claims.get("preferred_username") or claims["sub"])[:200]


def stable_id(claims: dict[str, Any]) -> str:
    """16 hex digits of SHA-256(issuer|sub): the user as the provider knows them, whatever they call themselves."""
    return hashlib.sha256(f"{claims['iss']}|{claims['sub']}".encode()).hexdigest()[:16]


async def _identity(request: Request, claims: dict[str, Any]) -> tuple[AdminIdentity, str]:
    settings = settings_of(request)
    groups = claims.get(settings.console_oidc_groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    granted: list[tuple[AdminRole, str | None]] = []
    for group in groups if isinstance(groups, list) else []:
        role = settings.console_oidc_roles.get(str(group))
        if role is None:
            continue
        if role.startswith("tenant:"):
            granted.append((AdminRole.TENANT, role.removeprefix("tenant:")))
        else:
            granted.append((AdminRole(role), None))
    subject = _subject(claims)
    if not granted:
        raise SignInRefused("no_role", f"{subject} ({claims['sub']}) is in no group that may use this console")
    role, tenant_id = min(granted, key=lambda grant: (_RANK[grant[0]], grant[1] or ""))
    if tenant_id is not None:
        async with sessions_of(request)() as session:
            tenant = await session.get(Tenant, tenant_id)
        if tenant is None or tenant.status == TenantStatus.DELETED:
            raise SignInRefused("tenant_gone", f"the tenant {tenant_id!r} that {subject}'s group maps to is gone")
    return AdminIdentity(oidc_actor(stable_id(claims), subject), role, tenant_id, name=subject), subject
