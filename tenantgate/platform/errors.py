"""Gateway errors, rendered in OpenAI's error shape so SDKs raise their usual exception classes.

``{"error": {"message", "type", "param", "code"}}`` is the only error body the gateway sends, from the raw
proxy path and from the FastAPI routes alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from tenantgate.core.errors import (
    BadRequest as BadRequest,
)
from tenantgate.core.errors import (
    Conflict as Conflict,
)
from tenantgate.core.errors import (  # re-exported: the platform's modules import them from here
    GatewayError as GatewayError,
)
from tenantgate.core.errors import (
    InvalidApiKey as InvalidApiKey,
)
from tenantgate.core.errors import (
    NotFound as NotFound,
)
from tenantgate.core.errors import (
    PayloadTooLarge as PayloadTooLarge,
)
from tenantgate.core.errors import (
    PermissionDenied as PermissionDenied,
)
from tenantgate.core.errors import (
    ServiceUnavailable as ServiceUnavailable,
)
from tenantgate.core.errors import (
    TooManyFailedAttempts as TooManyFailedAttempts,
)
from tenantgate.core.errors import (
    UpstreamAddressForbidden as UpstreamAddressForbidden,
)
from tenantgate.core.errors import (
    UpstreamTimeout as UpstreamTimeout,
)
from tenantgate.core.errors import (
    UpstreamUnavailable as UpstreamUnavailable,
)
from tenantgate.core.errors import (
    error_body as error_body,
)


async def send_error(send: Send, error: GatewayError, request_id: str | None = None) -> None:
    """Render an error from raw ASGI code (the proxy path)."""
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    headers.extend((k.lower().encode(), v.encode()) for k, v in error.headers.items())
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(message, type_, code, param),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


_STATUS_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "rate_limit_exceeded",
}


def _validation_message(errors: list[Any]) -> tuple[str, str | None]:
    parts = []
    first_param = None
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        param = ".".join(loc) or None
        first_param = first_param or param
        parts.append(f"{param}: {err.get('msg')}" if param else str(err.get("msg")))
    return "; ".join(parts) or "Invalid request.", first_param


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return _json_error(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        message, param = _validation_message(list(exc.errors()))
        return _json_error(422, message, "invalid_request_error", "invalid_request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        message = str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = f"Invalid URL ({request.method} {request.url.path})"
        return _json_error(exc.status_code, message, type_, _STATUS_CODES.get(exc.status_code), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        return _json_error(500, "The gateway had an internal error.", "server_error", "internal_error")
