"""Security and caching headers on every response of the console and the admin API, added in one place.

Set per route, a header is missing wherever a route forgets it or never runs: errors raised by dependencies
(401, 403, 422), the router's own 404s and trailing-slash redirects, the throttle's 429s. This pure-ASGI layer
sees every response start under ``/console`` (and the old ``/dashboard`` bookmark) and adds the security headers
(a Content Security Policy without inline script, no framing, no sniffing, no referrer) and ``Cache-Control:
no-store`` unless the route chose a cache policy of its own (the page and its built assets: ``no-cache``). Under
``/admin`` every response gets ``no-store`` the same way: created keys and tokens come back in plaintext there,
and nothing an operator reads should sit in a shared or browser cache.

An exception a route or a dependency does not handle (a bug, the database gone) is answered by Starlette's
outermost layer, outside this one, so its 500 had none of these headers. Here it is answered first: a 500 in
OpenAI's shape that says nothing of the exception, with the same headers and the request's id; then the exception
goes on up, so the server still logs it and closes the connection. A response that had already started cannot be
changed: it is cut off as before.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantgate.core.context import SCOPE_REQUEST_ID
from tenantgate.core.errors import error_body

CONSOLE_PATH = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
NO_STORE = "no-store"
_CONSOLE_PATHS = (CONSOLE_PATH, "/dashboard")
_ADMIN_PATH = "/admin"
# The same answer as the app's handler of unexpected exceptions (platform/errors.py).
_INTERNAL_ERROR = error_body("The gateway had an internal error.", "server_error", "internal_error")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def headers_for(path: str) -> dict[str, str] | None:
    """The headers every response for ``path`` carries (Cache-Control only where the route set none)."""
    if any(_under(path, prefix) for prefix in _CONSOLE_PATHS):
        return SECURITY_HEADERS
    if _under(path, _ADMIN_PATH):
        return {}
    return None


class ConsoleHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = headers_for(scope["path"]) if scope["type"] == "http" else None
        if extra is None:
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["Cache-Control"] = NO_STORE
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
                ]
                request_id = scope.get(SCOPE_REQUEST_ID)
                if isinstance(request_id, str):  # for the caller to quote to the operator
                    headers.append((b"x-request-id", request_id.encode()))
                await send_with_headers({"type": "http.response.start", "status": 500, "headers": headers})
                await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
            raise
