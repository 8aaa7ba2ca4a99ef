"""Refuse NUL in the URL, and control characters in a /v1 query, with a 400, before any route runs (the /v1 proxy
and the FastAPI surface alike).

PostgreSQL text cannot hold U+0000: a NUL reaching a query (``/admin/tenants/a%00b``, ``?tenant_id=a%00b``,
``/v1/files?after=a%00``) made asyncpg raise, which surfaced as a 500 (or a misleading 503 "usage data
unavailable"). No id, name, cursor or filter of ours or OpenAI's contains a NUL, and on the tenant surface (``/v1``)
none contains any other control character (U+0000-U+001F, U+007F) either: there a query string that decodes to one
is refused, whatever the parameter: a value the gateway reads (a list's ``after``, ``purpose``), one it forwards
(``include[]``, ``order``) or one it ignores. The path's own parameters have a stricter grammar still
(proxy/routes.py). The operator's surface (admin, usage export) refuses NUL only: its filters are the operator's.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_REQUEST_ID
from tenantgate.platform.errors import BadRequest, send_error

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def refused_url(scope: Scope) -> BadRequest | None:
    """The 400 for a URL with a NUL in its path or a control character in its query; None for any other."""
    if "\x00" in scope["path"]:
        return BadRequest("The URL contains a NUL character (%00), which no parameter accepts.")
    query: bytes = scope.get("query_string", b"")
    if not query:
        return None
    decoded = unquote_to_bytes(query)
    if scope["path"].startswith("/v1/"):
        if _CONTROL.search(decoded) is not None:
            return BadRequest(
                "The query string contains a control character (such as %00 or %0A), which no parameter accepts.",
                code="invalid_query",
            )
    elif b"\x00" in decoded:
        return BadRequest("The URL contains a NUL character (%00), which no parameter accepts.")
    return None


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (error := refused_url(scope)) is not None:
            await send_error(send, error, scope.get(SCOPE_REQUEST_ID))
            return
        await self.app(scope, receive, send)
