"""What the lean HTTP/1.1 client raises and takes as timeouts, named as aiohttp's.

The class name is the ``error.type`` on spans and metrics whichever client failed, so the lean client and aiohttp
look alike to the proxy and to dashboards (platform/upstream/errors.py catches both).
"""

from __future__ import annotations

from dataclasses import dataclass


class ClientError(Exception):
    """An upstream could not be reached or answered with something that is not HTTP."""


class ClientConnectionError(ClientError):
    pass


class ClientOSError(ClientConnectionError, OSError):
    """The connection failed at the socket level (e.g. reset by the upstream before it answered)."""


class ClientConnectorError(ClientOSError):
    """Connecting failed; ``os_error`` is why."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"Cannot connect to host {host}:{port} [{os_error.strerror or os_error}]")
        self.host = host
        self.port = port
        self.os_error = os_error


class ClientProxyConnectionError(ClientConnectorError):
    """The outbound proxy could not be reached (``host``/``port`` are the proxy's)."""


class ServerDisconnectedError(ClientConnectionError):
    def __init__(self, message: str = "Server disconnected") -> None:
        super().__init__(message)


class ClientPayloadError(ClientError):
    """The answer's body broke off or was not valid HTTP framing."""


class ClientResponseError(ClientError):
    """The answer's head was not valid HTTP, or larger than the limits (as aiohttp's, which then reports 400)."""


class ClientHttpProxyError(ClientResponseError):
    """The outbound proxy refused to open a tunnel (``status`` is its answer, e.g. 407 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InvalidURL(ClientError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per request, as aiohttp's ``ClientTimeout``: ``sock_connect`` for connecting, ``total`` for the whole exchange
    up to the last byte of the answer, ``sock_read`` between two reads of the answer. None: no limit."""

    total: float | None = None
    sock_connect: float | None = None
    sock_read: float | None = None
