"""Which exceptions count as an upstream failure for the proxy, without importing aiohttp.

The operator's upstreams are served by the gateway's own HTTP/1.1 client (wire/http1.py); aiohttp serves only base
URLs that tenants set and the ``TENANTGATE_UPSTREAM_HTTP_CLIENT=aiohttp`` escape hatch, and is imported when one of
those is first used (aio.py): it is about 9.5 MB of a worker's memory. So the lean client raises the exception types
of wire/httperrors.py, named as aiohttp's, and the proxy catches ``CLIENT_ERRORS``, to which aio.py adds aiohttp's
base class when it is imported.
"""

from __future__ import annotations

from tenantgate.wire.httperrors import ClientError

# Read as ``errors.CLIENT_ERRORS`` where an exception is caught (not imported by name): aio.py extends it.
CLIENT_ERRORS: tuple[type[Exception], ...] = (ClientError,)


def also_catch(error_type: type[Exception]) -> None:
    """Treat ``error_type`` (aiohttp's ``ClientError``) as an upstream failure wherever ``CLIENT_ERRORS`` is caught."""
    global CLIENT_ERRORS
    if error_type not in CLIENT_ERRORS:
        CLIENT_ERRORS = (*CLIENT_ERRORS, error_type)
