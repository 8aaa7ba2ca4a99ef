"""Cursors of the lists the upstream answers (a response's input items, a stored completion's messages, a
conversation's items, a vector store's files): never another tenant's id.

The object listed is the caller's, but ``after``/``before`` name a position in some order the upstream keeps across
the shared account. An id of another tenant's there asks the upstream where that object sits: depending on the
upstream, an error, an empty page, or the caller's own entries after (or before) it, which says when the other
tenant's object was made. Such a cursor is answered here with the empty page an unknown cursor gets from the
gateway's own lists (``ObjectIndex.page``); the other tenant's id never reaches the upstream.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.proxy.models import send_json
from tenantgate.platform.proxy.routes import Route
from tenantgate.tenants.objects import ObjectOwnership

_CURSORS = frozenset({"after", "before"})
_EMPTY_PAGE: dict[str, object] = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


async def another_tenants_cursor(ownership: ObjectOwnership, exchange: Exchange, route: Route, query: bytes) -> bool:
    """Whether a cursor the route would forward (every occurrence, if repeated) names another tenant's object."""
    if route.method != "GET" or not query or not (route.query & _CURSORS):
        return False
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=32)
    except ValueError:
        return False  # refused when the route builds its upstream query
    tenant_id = exchange.ctx.principal.tenant_id
    for name, value in pairs:
        if name in _CURSORS and name in route.query and value:
            owner = await ownership.owner(value, asker=tenant_id)
            if owner is not None and owner.tenant_id != tenant_id:
                return True
    return False


async def send_empty_page(send: Send, exchange: Exchange) -> None:
    await send_json(send, exchange, _EMPTY_PAGE)
