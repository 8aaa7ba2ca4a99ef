"""Cursors of the lists the upstream answers (a response's input items, a stored completion's messages, a
conversation's items, a vector store's files): never another tenant's id.

The object listed is the caller's, but ``after``/``before`` name a position in some order the upstream keeps across
the shared account. An id of another tenant's there asks the upstream where that object sits: depending on the
upstream, an error, an empty page, or the caller's own entries after (or before) it, which says when the other
tenant's object was made. Such a cursor is answered here with the empty page an unknown cursor gets from the
gateway's own lists (``ObjectIndex.page``); the other tenant's id never reaches the upstream. A cursor is also an
id like any other the request names: one path segment's grammar, at most 128 characters, given once (400 else).

Where the gateway records every entry the caller can have seen (a conversation's items and a response's input
items, claimed as the caller's when an answer shows them; a vector store's files), an id it does not know as the
caller's gets that empty page too: another tenant's item the gateway never saw (a turn's input, appended upstream)
is as unknown as a made-up id, so neither reaches the upstream as a cursor and the two cannot be told apart. An unknown
id is first looked up where the caller's own list lives (``found``: its conversation's item, its response's input
items): one of its entries is the caller's, whether or not this process has its record yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.types import Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.proxy.models import send_json
from tenantgate.platform.proxy.routes import Route
from tenantgate.platform.proxy.upstream_calls import get_json
from tenantgate.platform.upstream.paths import is_segment
from tenantgate.platform.upstream.registry import Upstream
from tenantgate.tenants.objects import ObjectOwnership, Owner

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_CURSORS = frozenset({"after", "before"})
_EMPTY_PAGE: dict[str, object] = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
# Lists whose entries the gateway knows the owner of: a vector store's files (and a file batch's) are files, each
# recorded when its tenant made it and checked when attached; a conversation's items and a response's input items
# are recorded as the caller's in every answer that shows them (conversation_answers.py), so the ``last_id`` of a
# page is always known. A cursor there must be the caller's own; one the gateway never saw is nobody's here, so it
# gets the same empty page as another tenant's.
_OWNED_ENTRIES = frozenset(
    {
        "/v1/vector_stores/{vector_store_id}/files",
        "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
        "/v1/conversations/{conversation_id}/items",
        "/v1/responses/{response_id}/input_items",
        "/v1/chat/completions/{completion_id}/messages",
    }
)


async def another_tenants_cursor(
    ownership: ObjectOwnership,
    exchange: Exchange,
    route: Route,
    query: bytes,
    found: Callable[[str], Awaitable[bool]] | None = None,
) -> bool:
    """Whether a cursor the route would forward names an object that is not the caller's: another tenant's (any
    list), or, on a list whose entries the gateway tracks, any id it does not know as the caller's. A cursor's form
    and length were checked with the route's query (``Route.checked_query``: one segment, at most 128 characters);
    on the other lists (a stored completion's messages, whose ids the gateway never records) an id it does not know
    goes on in that form. ``found`` is asked about an id the gateway does not know on a tracked list, where the
    upstream can say whether it is one of the caller's (an item of the caller's conversation, seen there by another
    process whose record has not reached this one): only then does it go on."""
    if route.method != "GET" or not query or not (route.query & _CURSORS):
        return False
    tenant_id = exchange.ctx.principal.tenant_id
    tracked = route.template in _OWNED_ENTRIES
    for name, value in route.checked_query(query):
        if name in _CURSORS and value:
            owner = await ownership.owner(value, asker=tenant_id)
            if owner is None:
                if tracked and (found is None or not await found(value)):
                    return True
            elif owner.tenant_id != tenant_id:
                return True
    return False


async def send_empty_page(send: Send, exchange: Exchange) -> None:
    await send_json(send, exchange, _EMPTY_PAGE)


_LOOKUP_PAGES = 10  # entries looked through for an unrecorded cursor: 1,000, far more than a turn's input or messages


async def among_listed(
    services: ProxyServices,
    route: Route,
    params: dict[str, str],
    upstream: Upstream,
    keys: dict[str, str] | None,
    owner: Owner,
    entry_id: str,
) -> bool:
    """Whether ``entry_id`` is an entry of the caller's own list (``route`` with ``params``: its response's input
    items, its completion's messages), read from the upstream holding it in pages of 100 from the first, each next
    one from the upstream's own ``last_id``; found, it is recorded as the caller's (first owner wins). The id itself
    never reaches the upstream."""
    if not is_segment(entry_id):
        return False
    query = b"limit=100&order=asc"
    for _ in range(_LOOKUP_PAGES):
        status, answer = await get_json(services.http, upstream, keys, "GET", route.upstream(params, query))
        data = answer.get("data") if status == 200 and answer is not None else None
        if answer is None or not isinstance(data, list):
            return False
        if any(isinstance(entry, dict) and entry.get("id") == entry_id for entry in data):
            return await services.ownership.record(entry_id, "item", owner) is None
        last = answer.get("last_id")
        if answer.get("has_more") is not True or not isinstance(last, str) or not is_segment(last):
            return False
        query = b"limit=100&order=asc&after=" + last.encode()
    return False
