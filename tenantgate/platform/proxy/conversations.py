"""Stored chat completions and conversations: reachable by their owner only, the completions list from the index.

A chat completion made with ``store: true`` becomes the caller's when it is answered (``conversation_answers.py``);
``GET /v1/chat/completions`` is answered from the tenant's index (the upstream's list would show every tenant's),
filtered by ``model`` and ``metadata[key]=value`` as OpenAI's is; retrieve, metadata update, delete and
``/messages`` go to the upstream and account holding the completion, for its owner only.

A conversation becomes the caller's when it is created; its items are reached only through it: an item route
needs the conversation to be the caller's and the item to be nobody else's (items the gateway has seen are owned
like responses). Items given in a body (create, add items) may name stored objects (``item_reference``, input
files); each must be the caller's, as in a Responses request. None of this is model work: nothing is billed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import BadRequest
from tenantgate.platform.proxy.conversation_answers import CHAT_COMPLETION
from tenantgate.platform.proxy.cursors import among_listed, another_tenants_cursor, send_empty_page
from tenantgate.platform.proxy.objects import forward_object, home, list_params, owned_holder, read_json, send_list
from tenantgate.platform.proxy.references import Reference, references
from tenantgate.platform.proxy.routes import LIST_CHAT_COMPLETIONS, RETRIEVE_CHAT_COMPLETION, Route
from tenantgate.platform.proxy.stored import check_references, holder, item_of_conversation, not_found
from tenantgate.platform.proxy.upstream_calls import get_json
from tenantgate.platform.upstream.registry import Target, Upstream
from tenantgate.tenants.models import TenantObject
from tenantgate.tenants.objects import Owner

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_MAX_METADATA_BODY = 64 * 1024  # a metadata update: 16 pairs of at most 64 + 512 characters, escaped
_COMPLETIONS_PAGE = (20, 100)  # OpenAI's default and largest page of stored chat completions
_MAX_ITEMS = 20  # OpenAI's most items per create or add


async def serve(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    await services.hooks.admit(exchange)  # limits first: a refused caller costs no database read
    if route is LIST_CHAT_COMPLETIONS:
        await _list_completions(services, exchange, scope, send)
        return
    body: bytes | None = None
    completion: Owner | None = None
    if "completion_id" in params:
        completion, upstream, keys = await owned_holder(services, exchange, CHAT_COMPLETION, params["completion_id"])
        exchange.created_under = params["completion_id"]
        if route.method == "POST":
            body, _ = await read_json(scope, receive, _MAX_METADATA_BODY)
    elif "conversation_id" in params:
        _, upstream, keys = await owned_holder(services, exchange, "conversation", params["conversation_id"])
        exchange.created_under = params["conversation_id"]
        item_id = params.get("item_id")
        if item_id is not None:
            item = await services.ownership.owner(item_id, asker=exchange.ctx.principal.tenant_id)
            # An item the gateway never saw may be one a turn appended upstream: it goes to the conversation's holder.
            if item is not None and (
                item.tenant_id != exchange.ctx.principal.tenant_id or item.kind not in (None, "item")
            ):
                raise not_found("item", item_id)
        if route.method == "POST":
            body = await _items_body(services, exchange, upstream, scope, receive)
    else:  # POST /v1/conversations
        upstream, keys, _ = home(services, exchange)
        body = await _items_body(services, exchange, upstream, scope, receive)
    conversation_id = params.get("conversation_id")

    async def in_conversation(item_id: str) -> bool:
        """A cursor the gateway has no record of (listed on another process, not yet written): the caller's if its
        own conversation holds it upstream."""
        assert conversation_id is not None
        return await item_of_conversation(services, exchange, conversation_id, item_id) is not None

    async def among_messages(message_id: str) -> bool:
        """The same for a stored completion's messages: the caller's if its completion has it upstream."""
        assert completion is not None
        return await among_listed(services, route, params, upstream, keys, completion, message_id)

    found = in_conversation if conversation_id is not None else among_messages if completion is not None else None
    if await another_tenants_cursor(services.ownership, exchange, route, scope["query_string"], found):
        await send_empty_page(send, exchange)
        return
    await forward_object(services, exchange, route, params, upstream, keys, scope, receive, send, body=body)


async def _items_body(
    services: ProxyServices, exchange: Exchange, upstream: Upstream, scope: Scope, receive: Receive
) -> bytes:
    """A body that may carry items (as large as a Responses request's input may be): every stored object it names
    must be the caller's, at ``upstream``."""
    raw, payload = await read_json(scope, receive, services.settings.max_request_body_bytes)
    named = references("", payload, True)
    items = payload.get("items")
    if items is not None and not isinstance(items, list):
        # Only a list's items are checked by id: another shape is refused, not forwarded for the upstream to read.
        raise BadRequest("Invalid 'items': expected an array of items.", param="items", code="invalid_type")
    if isinstance(items, list):
        if len(items) > _MAX_ITEMS:
            raise BadRequest(f"Invalid 'items': at most {_MAX_ITEMS} items at a time.", param="items")
        named.extend(
            Reference("item", str(item["id"]), f"items[{index}].id")
            for index, item in enumerate(items)
            if isinstance(item, dict) and "id" in item
        )
    if named:
        await check_references(services, exchange, named, (Target(upstream, ""),))
    return raw


def _filters(query: bytes) -> tuple[str | None, dict[str, str]]:
    """``model`` and ``metadata[key]=value`` of a stored chat completions list."""
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=32)
    except ValueError:
        raise BadRequest("Too many query parameters.") from None
    model: str | None = None
    metadata: dict[str, str] = {}
    for name, value in pairs:
        if name == "model":
            model = value
        elif name.startswith("metadata[") and name.endswith("]"):
            metadata[name[len("metadata[") : -1]] = value
    return model, metadata


def _matcher(model: str | None, metadata: dict[str, str]) -> Any:
    if model is None and not metadata:
        return None

    def match(row: TenantObject) -> bool:
        state = row.state or {}
        if model is not None and model not in (state.get("model"), state.get("response_model")):
            return False
        kept = state.get("metadata")
        return all(isinstance(kept, dict) and kept.get(key) == value for key, value in metadata.items())

    return match


async def _list_completions(services: ProxyServices, exchange: Exchange, scope: Scope, send: Send) -> None:
    query = scope["query_string"]
    limit, after, order, _ = list_params(
        query, default_limit=_COMPLETIONS_PAGE[0], max_limit=_COMPLETIONS_PAGE[1], default_order="asc"
    )
    model, metadata = _filters(query)
    tenant_id = exchange.ctx.principal.tenant_id
    page = await services.objects.page(
        tenant_id, CHAT_COMPLETION, limit=limit, after=after, order=order, match=_matcher(model, metadata)
    )
    shown = await asyncio.gather(*(_snapshot(services, exchange, row) for row in page.rows))
    await send_list(send, exchange, [row for row in shown if row is not None], page.has_more)


async def _snapshot(services: ProxyServices, exchange: Exchange, row: TenantObject) -> dict[str, Any] | None:
    """The completion as its list entry shows it: as last seen; read once from its holder if never seen whole (it
    was streamed). None if the holder no longer has it (it leaves the tenant's lists)."""
    if row.snapshot is not None:
        return row.snapshot
    owner = Owner(row.tenant_id, row.upstream, "tenant" if row.account == "tenant" else "platform", row.api_key_id)
    reachable = owner.account == "platform" or owner.upstream in exchange.ctx.principal.upstream_keys
    upstream, keys = holder(services, exchange, owner) if reachable else (None, None)
    if upstream is None:
        return {"id": row.id, "object": "chat.completion"}
    path = RETRIEVE_CHAT_COMPLETION.upstream({"completion_id": row.id})
    status, answer = await get_json(services.http, upstream, keys, "GET", path)
    if status == 404:
        await services.objects.deleted(row.tenant_id, row.id)
        return None
    if status >= 400 or answer is None or answer.get("id") != row.id:
        return {"id": row.id, "object": "chat.completion"}
    await services.objects.seen(row.tenant_id, row.id, snapshot=answer)
    return answer
