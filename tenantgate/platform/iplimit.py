"""Per-client-IP throttling of the admin and usage surface, with slowapi (memory storage, per process).

Not for the per-key hot path (see platform/limits): slowapi is synchronous. With memory storage that costs
nothing, and a per-IP guard on the operator surface needs no cross-process precision.

slowapi's own middleware finds the limited endpoint by walking ``app.routes``; on FastAPI >= 0.137 routes from
an ``APIRouter`` are no longer listed there, so its default and application limits silently stop applying to
them (slowapi #281) - every admin route is such a route. This pure-ASGI layer therefore selects requests by path
prefix and asks slowapi's limiter directly (the same call its middleware makes), sharing one budget per IP
across the whole surface. The limiter lives here, not in ``app.state.limiter``, so it does not collide with
other slowapi limiters in the app. The client IP is the socket peer, or the forwarded client address when the
peer is one of ``TENANTGATE_TRUSTED_PROXIES``.

A request presenting a credential this process knows to be valid (the bootstrap admin token, or a token or tenant
key vouched for by the auth throttle when it was last looked up) has a budget of its own, by credential, not its
address's: junk from the same address (everybody behind one ingress) cannot lock out the real admin.
"""

from __future__ import annotations

import hmac
import math
import time

from slowapi import Limiter as SlowapiLimiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.platform.context import request_id_of
from tenantgate.platform.errors import GatewayError, send_error
from tenantgate.platform.middleware import presented_key
from tenantgate.tenants.auth_throttle import AuthThrottle
from tenantgate.tenants.keys import hash_key

SURFACE_PREFIXES = ("/admin/", "/v1/organization/", "/console/api/", "/console/oidc/")


class SurfaceThrottled(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


def _surface() -> None:
    """Stands for the whole surface in slowapi's bookkeeping (one budget per IP for every route in it)."""


_SCOPE_BUDGET = "tenantgate.surface_budget"


class KnownCredentials:
    """Which presented credentials this process knows to be valid (never a lookup)."""

    def __init__(self, throttle: AuthThrottle, secret_key: bytes, bootstrap_token: str | None) -> None:
        self.throttle = throttle
        self.secret_key = secret_key
        self.bootstrap = bootstrap_token.encode() if bootstrap_token else None

    def budget_of(self, scope: Scope) -> str | None:
        """The budget a request's credential has of its own, if the credential is known valid."""
        presented = presented_key(scope["headers"])
        if not presented:
            return None
        if self.bootstrap is not None and hmac.compare_digest(presented.encode("latin-1"), self.bootstrap):
            return "credential:bootstrap"
        hashed = hash_key(self.secret_key, presented)
        if self.throttle.vouched("admin", hashed) or self.throttle.vouched("tenant", hashed):
            return f"credential:{hashed}"
        return None


def _budget(request: Request) -> str:
    budget = request.scope.get(_SCOPE_BUDGET)
    return budget if isinstance(budget, str) else get_remote_address(request)


class SurfaceIpLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        limit: str,
        prefixes: tuple[str, ...] = SURFACE_PREFIXES,
        known: KnownCredentials | None = None,
    ) -> None:
        self.app = app
        self.prefixes = prefixes
        self.limit = limit
        self.known = known
        self.limiter = SlowapiLimiter(
            key_func=_budget,
            application_limits=[limit],
            storage_uri="memory://",
            key_prefix="surface",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        if self.known is not None and (budget := self.known.budget_of(scope)) is not None:
            scope[_SCOPE_BUDGET] = budget
        request = Request(scope)
        try:
            self.limiter._check_request_limit(request, _surface, in_middleware=True)
        except RateLimitExceeded:
            await send_error(send, self._throttled(request), request_id_of(scope))
            return
        await self.app(scope, receive, send)

    def _throttled(self, request: Request) -> SurfaceThrottled:
        item, args = request.state.view_rate_limit
        reset_at, _ = self.limiter.limiter.get_window_stats(item, *args)
        wait = max(1, math.ceil(reset_at - time.time()))
        return SurfaceThrottled(
            f"Too many requests to the admin and usage API from your address or credential: Limit {self.limit}. "
            f"Please try again in {wait}s.",
            headers={"retry-after": str(wait), "retry-after-ms": str(wait * 1000)},
        )
