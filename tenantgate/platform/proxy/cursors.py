"""Cursors of the lists the upstream answers (a response's input items, a stored completion's messages, a
conversation's items, a vector store's files): never another tenant's id.

The object listed is the caller's, but ``after``/``before`` name a position in some order the upstream keeps across
the shared account. An id of another tenant's there asks the upstream where that object sits: depending on the
upstream, an error, an empty page, or the caller's own entries after (or before) it, which says when the other
tenant's object was made. Such a cursor is answered here with the empty page an unknown cursor gets from the
gateway's own lists (``ObjectIndex.page``); the other tenant's id never reaches the upstream. A cursor is also an
id like any other the request names: one path segment's grammar, at most 128 characters, given once (400 else).
"""

from __future__ import annotations

from starlette.types import Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.proxy.models import send_json
from tenantgate.platform.proxy.routes import Route
from tenantgate.tenants.objects import ObjectOwnership

_CURSORS = frozenset({"after", "before"})
_EMPTY_PAGE: dict[str, object] = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
# Lists whose entries the gateway knows the owner of: a vector store's files (and a file batch's) are files, each
# recorded when its tenant made it and checked when attached. A cursor there must be the caller's own file; one the
# gateway never saw made is nobody's here, so it gets the same empty page as another tenant's.
_OWNED_ENTRIES = frozenset(
    {"/v1/vector_stores/{vector_store_id}/files", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files"}
)


async def another_tenants_cursor(ownership: ObjectOwnership, exchange: Exchange, route: Route, query: bytes) -> bool:
    """Whether a cursor the route would forward names an object that is not the caller's: another tenant's (any
    list), or, on a list whose entries the gateway tracks, any id it does not know as the caller's. A cursor's form
    and length were checked with the route's query (``Route.checked_query``: one segment, at most 128 characters);
    an id the gateway cannot know (a response's input items) goes on only in that form."""
    if route.method != "GET" or not query or not (route.query & _CURSORS):
        return False
    tenant_id = exchange.ctx.principal.tenant_id
    tracked = route.template in _OWNED_ENTRIES
    for name, value in route.checked_query(query):
        if name in _CURSORS and value:
            owner = await ownership.owner(value, asker=tenant_id)
            if owner is None:
                if tracked:
                    return True
            elif owner.tenant_id != tenant_id:
                return True
    return False


async def send_empty_page(send: Send, exchange: Exchange) -> None:
    await send_json(send, exchange, _EMPTY_PAGE)
