"""What the upstream clients raise and take as timeouts, without importing aiohttp.

The operator's upstreams are served by the gateway's own HTTP/1.1 client (http1.py); aiohttp serves only base URLs
that tenants set and the ``TENANTGATE_UPSTREAM_HTTP_CLIENT=aiohttp`` escape hatch, and is imported when one of those
is first used (aio.py): it is about 9.5 MB of a worker's memory. So the lean client raises the exception types
below, named as aiohttp's (the class name is the ``error.type`` on spans and metrics, whichever client failed), and
the proxy catches ``CLIENT_ERRORS``, to which aio.py adds aiohttp's base class when it is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


class ClientError(Exception):
    """An upstream could not be reached or answered with something that is not HTTP."""


class ClientConnectionError(ClientError):
    pass


class ClientConnectorError(ClientConnectionError):
    """Connecting failed; ``os_error`` is why."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"Cannot connect to host {host}:{port} [{os_error.strerror or os_error}]")
        self.host = host
        self.port = port
        self.os_error = os_error


class ServerDisconnectedError(ClientConnectionError):
    def __init__(self, message: str = "Server disconnected") -> None:
        super().__init__(message)


class ClientPayloadError(ClientError):
    """The answer's body broke off or was not valid HTTP framing."""


class InvalidURL(ClientError, ValueError):
    pass


# Read as ``errors.CLIENT_ERRORS`` where an exception is caught (not imported by name): aio.py extends it.
CLIENT_ERRORS: tuple[type[Exception], ...] = (ClientError,)


def also_catch(error_type: type[Exception]) -> None:
    """Treat ``error_type`` (aiohttp's ``ClientError``) as an upstream failure wherever ``CLIENT_ERRORS`` is caught."""
    global CLIENT_ERRORS
    if error_type not in CLIENT_ERRORS:
        CLIENT_ERRORS = (*CLIENT_ERRORS, error_type)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per request, as aiohttp's ``ClientTimeout``: ``sock_connect`` for connecting, ``total`` for the whole exchange
    up to the last byte of the answer, ``sock_read`` between two reads of the answer. None: no limit."""

    total: float | None = None
    sock_connect: float | None = None
    sock_read: float | None = None
