"""Bounded request bodies: deadlines for a body that trickles in, and a size cap on the FastAPI surface.

The request head, connection count and head deadline are bounded by the HTTP protocol itself (http_protocol.py).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_REQUEST_ID
from tenantgate.platform.errors import GatewayError, send_error
from tenantgate.platform.proxy.http import ClientDisconnected, read_body


class RequestTimeout(GatewayError):
    """The body stopped arriving: the connection closes after the answer (what is left of the body cannot be told
    from a next request)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"connection": "close"})


class BodyDeadlineMiddleware:
    """Pure ASGI: while the application waits for more of the request body, the client must send some within
    ``idle`` seconds and all of it within ``total``; else ``RequestTimeout`` (408) is raised from ``receive`` (the
    proxy renders it; see ``app.py`` for the FastAPI side). Once the body is complete, ``receive`` is left alone:
    then it only reports a disconnect, which may take as long as the answer does."""

    def __init__(self, app: ASGIApp, idle: float, total: float) -> None:
        self.app = app
        self.idle = idle
        self.total = total

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        complete = False

        async def receive_in_time() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            wait = min(self.idle, self.total - (time.monotonic() - started))
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                complete = True  # whatever comes now, the request is over
                raise RequestTimeout(
                    f"The request body did not arrive in time (at most {self.idle:g}s between parts, "
                    f"{self.total:g}s in all)."
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, receive_in_time, send)


class BufferedBodyMiddleware:
    """Pure ASGI, for the FastAPI surface (admin, usage, ops): the whole body is read first, at most ``limit``
    bytes (``413``) and within the body deadlines (``408``), then handed to the application. FastAPI would turn an
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
