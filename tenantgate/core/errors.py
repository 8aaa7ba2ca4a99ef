"""Gateway errors as data: status, OpenAI ``type`` and ``code``, and the one body shape they render to.

``{"error": {"message", "type", "param", "code"}}`` is the only error body the gateway sends, from the raw proxy
path and from the FastAPI routes alike (``platform/errors.py`` renders these for both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class InvalidApiKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    """Refused before the whole body was read: the connection closes after the answer (the rest of the body may
    still be on its way, and would otherwise be read as the next request)."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("connection", "close")


class TooManyFailedAttempts(GatewayError):
    """Failed authentications from this source (or everybody) are over the limit: the credential was not checked.

    Still a 429 with ``retry-after``, which the OpenAI SDKs retry by themselves: a valid key behind the same address
    as a guesser gets in with that retry (answering 401 would turn someone else's guessing into a lockout). Its own
    code, so a client, a log or a dashboard tells it from a tenant's rate limit. A credential that *was* checked is
    answered for what it is - 401 when invalid - even when its failure is the one that reaches the limit."""

    status = 429
    type = "requests"
    code = "too_many_failed_authentications"


class UpstreamUnavailable(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_unavailable"


class UpstreamAddressForbidden(UpstreamUnavailable):
    """A tenant-set upstream URL points where the SSRF guard does not let the gateway connect."""

    code = "upstream_address_forbidden"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "api_error"
    code = "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})
