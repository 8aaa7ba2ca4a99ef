"""Pure-ASGI request pipeline (no BaseHTTPMiddleware: it breaks streaming back-pressure and contextvars).

Order, outermost first, is declared in ``app.GatewayApp``:
  TelemetryMiddleware  - HTTP metrics, the server span, the log context (observability/http.py)
  RequestIdMiddleware  - every response carries ``x-request-id`` (the caller's, or a new one)
  TenantAuthMiddleware - /v1/* callers are resolved into a RequestContext or refused with 401/403
                         (except /v1/organization/*, whose routes accept tenant keys and platform tokens)
  ProxyRouter          - the OpenAI endpoints, raw ASGI; anything else falls through to FastAPI
FastAPI runs RequestId and TenantAuth as well, for requests that reach it directly; TenantAuth does nothing a second
time, and RequestId reuses the id and tags FastAPI's responses (the outer one only assigns the id: every response
the proxy path makes itself carries it already).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_CONTEXT, SCOPE_REQUEST_ID, RequestContext
from tenantgate.platform.credentials import TenantKeys
from tenantgate.platform.errors import InvalidApiKey, PermissionDenied, TooManyFailedAttempts, send_error
from tenantgate.tenants.last_used import LastUsedTracker

_MAX_REQUEST_ID = 128
_SELF_AUTH = "/v1/organization/"


def valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= _MAX_REQUEST_ID and all(33 <= b < 127 for b in value)


class RequestIdMiddleware:
    """Gives the request its id (``scope[SCOPE_REQUEST_ID]``: the caller's ``x-request-id`` or a new one) and,
    with ``tag_responses``, adds it to responses that lack it. The proxy's own responses all carry it already, so
    the outer instance (GatewayApp) only assigns it, and FastAPI's instance tags what FastAPI answers."""

    def __init__(self, app: ASGIApp, tag_responses: bool = True) -> None:
        self.app = app
        self.tag_responses = tag_responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        assigned: str | None = scope.get(SCOPE_REQUEST_ID)
        if assigned is not None:
            request_id = assigned.encode()
        else:
            request_id = b""
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    request_id = value
                    break
            if not valid_request_id(request_id):
                request_id = b"req_" + os.urandom(16).hex().encode()
            scope[SCOPE_REQUEST_ID] = request_id.decode()
        if not self.tag_responses:
            await self.app(scope, receive, send)
            return

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if not any(name == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id))
            await send(message)

        await self.app(scope, receive, send_with_request_id)


_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY)."
)


class TenantAuthMiddleware:
    def __init__(self, app: ASGIApp, keys: TenantKeys, last_used: LastUsedTracker) -> None:
        self.app = app
        self.keys = keys
        self.last_used = last_used

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # /v1/organization/* (usage and costs) accepts tenant keys and platform tokens: its routes authenticate.
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith("/v1/") or path.startswith(_SELF_AUTH) or SCOPE_CONTEXT in scope:
            await self.app(scope, receive, send)
            return
        request_id: str = scope[SCOPE_REQUEST_ID]
        key = presented_key(scope["headers"])
        if not key:
            await send_error(send, InvalidApiKey(_NO_KEY), request_id)
            return
        try:
            principal = await self.keys.resolve(scope, key)
        except TooManyFailedAttempts as throttled:
            await send_error(send, throttled, request_id)
            return
        if principal is None:
            await send_error(send, InvalidApiKey(f"Incorrect API key provided: {_redact(key)}."), request_id)
            return
        if not principal.tenant_active:
            await send_error(
                send,
                PermissionDenied("This tenant is suspended. Contact the platform operator.", code="tenant_suspended"),
                request_id,
            )
            return
        self.last_used.touch(principal.key_id)  # a dict assignment; written in batches
        scope[SCOPE_CONTEXT] = RequestContext(request_id=request_id, principal=principal)
        await self.app(scope, receive, send)


def presented_key(headers: Sequence[tuple[bytes, bytes]]) -> str:
    api_key = b""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return credentials.strip().decode("latin-1")
        elif name == b"api-key":
            api_key = value.strip()
    return api_key.decode("latin-1")


def _redact(key: str) -> str:
    # Like OpenAI: enough of the key to recognise it, never enough to use it.
    return f"{key[:6]}***{key[-4:]}" if len(key) > 12 else "***"
