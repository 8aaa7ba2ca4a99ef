"""Raw ASGI helpers for the proxy path: bounded body reading and header filtering."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import Receive, Scope

from tenantgate.platform.errors import BadRequest, PayloadTooLarge

# Hop-by-hop headers, credentials of the caller (replaced by the platform's), and headers that name the
# caller's OpenAI organisation or ask for an encoding the gateway then could not meter.
_DROP_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"authorization",
        b"api-key",
        b"accept-encoding",
        b"openai-organization",
        b"openai-project",
        b"cookie",
        b"expect",
        # Headers a front (a proxy, an API manager, a platform's own load balancer) may act on to change the
        # method, path, host or body encoding of a request sent with the platform's credentials: the method and
        # path come from the route's template, never from the caller.
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
        b"x-original-method",
        b"x-original-url",
        b"x-original-uri",
        b"x-rewrite-url",
        b"x-original-host",
        b"x-host",
        b"forwarded",
        b"x-real-ip",
        b"via",
        b"content-encoding",
    }
)
_DROP_REQUEST_PREFIXES = (b"x-forwarded-", b"x-envoy-", b"x-amzn-", b"x-ms-original-")
# Hop-by-hop headers, and upstream account details that are the platform's business, not the tenant's.
_DROP_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"set-cookie",
        b"openai-organization",
        b"openai-project",
        b"alt-svc",
        b"proxy-authenticate",
        b"trailer",
        b"upgrade",
        b"date",
    }
)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to exceed ``limit``."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequest("Invalid Content-Length header.") from None
            if declared > limit:
                raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes.")
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientDisconnected(Exception):
    pass


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
            "JSON.)"
        ) from None
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.")
    return payload


def upstream_request_headers(
    scope: Scope, auth_header: str | None, tenant_id: str | None = None
) -> list[tuple[str, str]]:
    """The caller's headers that go on to the upstream: not the hop-by-hop ones (the fixed list, and any header the
    caller's ``Connection`` names, RFC 9110 7.6.1), not credentials, not what a front could act on; an
    ``Idempotency-Key`` scoped to the caller's tenant (``scoped_idempotency_key``), or dropped without one."""
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    named: set[bytes] = set()
    for name, value in raw:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    headers = []
    for name, value in raw:
        if name in _DROP_REQUEST_HEADERS or name.startswith(_DROP_REQUEST_PREFIXES) or name in named:
            continue
        if name == b"idempotency-key":
            if tenant_id is not None:
                headers.append(("Idempotency-Key", scoped_idempotency_key(tenant_id, value)))
            continue
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    if auth_header is not None:
        headers.append(("Authorization", auth_header))
    headers.append(("Accept-Encoding", "identity"))
    return headers


def scoped_idempotency_key(tenant_id: str, key: bytes) -> str:
    """What the upstream gets for a tenant's ``Idempotency-Key``: SHA-256 of the tenant id and the key. The same
    tenant sending the same key gets the same value (its retries stay idempotent); two tenants choosing the same key
    get different ones, so one can never be answered from the other's idempotency entry in the shared account (and
    no value a tenant chooses can equal another tenant's: that would take a SHA-256 preimage)."""
    tenant = tenant_id.encode()
    digest = hashlib.sha256(b"tenantgate idempotency\n" + len(tenant).to_bytes(4, "big") + tenant + key)
    return "tg-" + digest.hexdigest()


def client_response_headers(raw_headers: Iterable[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for raw_name, value in raw_headers:
        name = raw_name.lower()
        if name in _DROP_RESPONSE_HEADERS:
            continue
        if name.startswith(b"x-ratelimit-"):
            # The upstream's limits are the platform account's, not the tenant's.
            name = b"x-upstream-" + name[2:]
        elif name == b"x-request-id":
            name = b"x-upstream-request-id"
        headers.append((name, value))
    headers.append((b"x-request-id", request_id))
    return headers
