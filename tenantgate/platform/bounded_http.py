"""A size cap on request bodies of the FastAPI surface (admin, usage, ops).

Heads, body deadlines and the connection count are bounded by the HTTP protocol itself (http_protocol.py).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_REQUEST_ID
from tenantgate.platform.errors import GatewayError, send_error
from tenantgate.platform.proxy.http import ClientDisconnected, read_body


class BufferedBodyMiddleware:
    """Pure ASGI, for the FastAPI surface (admin, usage, ops): the whole body is read first, at most ``limit``
    bytes (``413``; the body deadlines are the protocol's), then handed to the application. FastAPI would turn an
    error raised while it reads the body into a 400 "There was an error parsing the body"; read here, the caller
    gets the real reason in OpenAI's shape. Admin bodies are small, so holding one costs nothing."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.limit)
        except ClientDisconnected:
            return
        except GatewayError as error:  # 413, 408, a bad Content-Length
            await send_error(send, error, scope.get(SCOPE_REQUEST_ID))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
