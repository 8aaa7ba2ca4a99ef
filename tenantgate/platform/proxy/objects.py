"""What the routes of stored objects (files, uploads, batches, vector stores, conversations, stored chat completions)
share: where a tenant's new objects go, which upstream and account hold an existing one, JSON bodies read once and
checked for a single reading, bodies streamed through with a byte limit, the one forward to the holder, and
OpenAI-shaped list pages from the index.

New objects go to the primary upstream (the default one, or the first declared), at the tenant's own endpoint and
with its own key when it has a BYOK record for that upstream; an existing object only ever to the upstream and
account that hold it (``stored.holder``), and only for its owner: anyone else gets the 404 of an unknown id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import BadRequest, PayloadTooLarge
from tenantgate.platform.proxy.forward import ForwardPolicy, forward
from tenantgate.platform.proxy.http import ClientDisconnected, parse_json_object, read_body
from tenantgate.platform.proxy.models import send_json
from tenantgate.platform.proxy.multipart import FormReader, form_reader
from tenantgate.platform.proxy.references import check_single_reading
from tenantgate.platform.proxy.routes import Route
from tenantgate.platform.proxy.stored import holder, not_found, owned
from tenantgate.platform.upstream.registry import Target, Upstream
from tenantgate.tenants.object_index import Order
from tenantgate.tenants.objects import Account, Owner

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

Keys = dict[str, str] | None


def home(services: ProxyServices, exchange: Exchange) -> tuple[Upstream, Keys, Account]:
    """Where the caller's new files, uploads and batches go, with which credentials, in which account."""
    primary = services.routing.primary
    principal = exchange.ctx.principal
    secret = principal.upstream_keys.get(primary.name)
    if secret is None:
        return primary, None, "platform"
    upstream = principal.own_upstreams.get(primary.name, primary)
    return upstream, {primary.name: secret.get_secret_value()}, "tenant"


async def read_json(scope: Scope, receive: Receive, limit: int) -> tuple[bytes, dict[str, Any]]:
    """A JSON object body of at most ``limit`` bytes that every JSON parser reads the same way (no duplicate keys, no
    escapes the upstream might decode differently)."""
    raw = await read_body(scope, receive, limit)
    payload = parse_json_object(raw)
    check_single_reading(raw, payload, escaped_or_nested=True)
    return raw, payload


async def forward_object(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    upstream: Upstream,
    keys: Keys,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    body: object,
    replayable: bool = True,
    stream_body: bool = False,
) -> None:
    """The request to the one upstream and account that hold the object (or, for a new one, ``home``): the route's
    fixed template with the checked ids and query. A JSON answer is kept for the hooks that record and check the ids
    in it; a streamed body (an upload) is not replayable and its answer is not parsed here."""
    exchange.keep_answer = not stream_body
    await forward(
        exchange,
        services.http,
        services.hooks,
        (Target(upstream, ""),),
        scope,
        receive,
        send,
        method=route.method,
        path=route.upstream(params, scope["query_string"]),
        body_for=lambda _target: body,
        policy=ForwardPolicy(
            services.settings.upstream_max_retry_wait_seconds, replayable=replayable, stream_body=stream_body
        ),
        tenant_keys=keys,
    )


async def owned_holder(
    services: ProxyServices, exchange: Exchange, kind: str, object_id: str, param: str | None = None
) -> tuple[Owner, Upstream, Keys]:
    """The caller's ``kind`` object and the upstream and credentials that hold it; else the 404 of an unknown id."""
    owner = await owned(services.ownership, exchange, object_id, kind)
    if owner is not None:
        upstream, keys = holder(services, exchange, owner)
        if upstream is not None:
            return owner, upstream, keys
    raise not_found(kind, object_id, param)


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise BadRequest("Invalid Content-Length header.") from None
    return None


def upload_form(scope: Scope) -> FormReader:
    """The reader of an upload's form; 400 at once unless the request is multipart/form-data with a boundary."""
    return form_reader(scope)


async def streamed_form(
    form: FormReader, receive: Receive, *, file_limit: int, body_limit: int, what: str
) -> AsyncIterator[bytes]:
    """A multipart body as it arrives, never held whole, through a real multipart parser (multipart.py: a field
    named twice is refused, as everywhere); cut off with 413 as soon as its file parts pass ``file_limit`` bytes or
    the body ``body_limit``: the upstream's request then never completes, so no file is made."""
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > body_limit:
            raise PayloadTooLarge(f"{what} exceeds the limit of {file_limit} bytes.")
        if chunk:
            form.feed(chunk)
            if form.file_bytes > file_limit:
                raise PayloadTooLarge(f"{what} exceeds the limit of {file_limit} bytes.")
            yield chunk


def list_params(
    query: bytes, *, default_limit: int, max_limit: int, default_order: Order = "desc"
) -> tuple[int, str | None, Order, str | None]:
    """``limit``, ``after``, ``order`` and ``purpose`` of a list request, checked (400 in OpenAI's words)."""
    try:
        pairs = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=32))
    except ValueError:
        raise BadRequest("Too many query parameters.") from None
    raw_limit = pairs.get("limit")
    limit = default_limit
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise BadRequest(f"Invalid 'limit': {raw_limit[:32]!r} is not an integer.", param="limit") from None
        if not 1 <= limit <= max_limit:
            raise BadRequest(
                f"Invalid 'limit': {limit}. It must be between 1 and {max_limit}.",
                param="limit",
                code="integer_out_of_range",
            )
    order = pairs.get("order", default_order)
    if order not in ("asc", "desc"):
        raise BadRequest(f"Invalid 'order': {order[:32]!r}. It must be 'asc' or 'desc'.", param="order")
    after = pairs.get("after") or None
    purpose = pairs.get("purpose") or None
    return limit, after, "asc" if order == "asc" else "desc", purpose


async def send_list(send: Send, exchange: Exchange, data: list[dict[str, Any]], has_more: bool) -> None:
    """OpenAI's cursor page (``first_id``/``last_id``/``has_more``; the SDKs page on with ``after=last_id``)."""
    page = {
        "object": "list",
        "data": data,
        "first_id": data[0].get("id") if data else None,
        "last_id": data[-1].get("id") if data else None,
        "has_more": has_more,
    }
    await send_json(send, exchange, page)
