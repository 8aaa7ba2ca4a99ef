"""Refuse NUL characters in the URL of admin, usage and ops requests with a 400.

PostgreSQL text cannot hold U+0000: a NUL reaching a query (``/admin/tenants/a%00b``, ``?tenant_id=a%00b``) made
asyncpg raise, which surfaced as a 500 (or a misleading 503 "usage data unavailable"). No id, name or filter of ours
can contain one, so the request is refused before any route runs. JSON bodies are covered by the admin schemas.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_REQUEST_ID
from tenantgate.platform.errors import BadRequest, send_error


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            error = BadRequest("The URL contains a NUL character (%00), which no parameter accepts.")
            await send_error(send, error, scope.get(SCOPE_REQUEST_ID))
            return
        await self.app(scope, receive, send)
