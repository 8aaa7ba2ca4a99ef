"""The Vector Stores API: a store, its files and file batches reachable by the owner of the store only; every file a
request names must be the caller's too; the list of stores comes from the index.

A store is created at the upstream and account that hold the files it is created with (all of them in one place,
else the 404 of the first that is not), or at the caller's home upstream when it names none. Every nested route
first checks the store (``vector_store_id``), then the file or file batch of its path, then each ``file_id`` /
``file_ids`` / ``files[].file_id`` of its body: each must be the caller's and held where the store is, else the
404 OpenAI gives for an id that does not exist, and nothing is forwarded. A store's own lists (its files, a file
batch's files) are the upstream's answer for that one store, which holds only files its owner attached; the list of
stores is answered from the tenant's index, never by the shared upstream account. What the answers name is
recorded and checked by ``vector_store_answers.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import BadRequest
from tenantgate.platform.proxy.cursors import another_tenants_cursor, send_empty_page
from tenantgate.platform.proxy.http import read_body
from tenantgate.platform.proxy.objects import forward_object, home, list_params, owned_holder, read_json, send_list
from tenantgate.platform.proxy.routes import LIST_VECTOR_STORES, Route
from tenantgate.platform.proxy.stored import holder, not_found, owned
from tenantgate.platform.upstream.registry import Upstream
from tenantgate.tenants.object_index import Order
from tenantgate.tenants.objects import Owner

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_MAX_JSON = 256 * 1024
_MAX_FILES = 500  # OpenAI's most files in one file batch
_STORES_PAGE = (20, 100)  # OpenAI's default and largest page of vector stores
Keys = dict[str, str] | None


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
    if route is LIST_VECTOR_STORES:
        await _list(services, exchange, scope, send)
        return
    if route.template == "/v1/vector_stores":
        await _create(services, exchange, route, scope, receive, send)
        return
    store_id = params["vector_store_id"]
    store, upstream, keys = await owned_holder(services, exchange, "vector_store", store_id, "vector_store_id")
    exchange.created_under = store_id
    if "file_id" in params:
        await _check_files(services, exchange, [(params["file_id"], "file_id")], store)
    if "batch_id" in params:
        await _check_owned(services, exchange, "vector_store_file_batch", params["batch_id"], "batch_id", store)
    raw: bytes | None = None
    if route.body == "json":
        raw, payload = await read_json(scope, receive, _MAX_JSON)
        if route.template.endswith(("/files", "/file_batches")):
            files = _body_file_ids(payload)
            if not files and route.template.endswith("/files"):
                raise BadRequest("Missing required parameter: 'file_id'.", param="file_id")
            await _check_files(services, exchange, files, store)
    elif route.method == "POST":
        raw = await read_body(scope, receive, _MAX_JSON)  # a cancel carries nothing in OpenAI's API
    if await another_tenants_cursor(services.ownership, exchange, route, scope["query_string"]):
        await send_empty_page(send, exchange)
        return
    await forward_object(services, exchange, route, params, upstream, keys, scope, receive, send, body=raw)


async def _create(
    services: ProxyServices, exchange: Exchange, route: Route, scope: Scope, receive: Receive, send: Send
) -> None:
    raw, payload = await read_json(scope, receive, _MAX_JSON)
    files = _body_file_ids(payload)
    if files:
        first, upstream, keys = await _owned_file(services, exchange, files[0][0], files[0][1])
        await _check_files(services, exchange, files[1:], first)
        exchange.created_under = files[0][0]  # the store is made where its files are, in that account
    else:
        upstream, keys, _ = home(services, exchange)
    if await another_tenants_cursor(services.ownership, exchange, route, scope["query_string"]):
        await send_empty_page(send, exchange)
        return
    await forward_object(services, exchange, route, {}, upstream, keys, scope, receive, send, body=raw)


def _body_file_ids(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Every file a create, attach or file batch body names, with where it names it (``file_id``, ``file_ids[2]``,
    ``files[0].file_id``); 400 for a malformed one."""
    found: list[tuple[str, str]] = []
    file_id = payload.get("file_id")
    if file_id is not None:
        found.append((_id(file_id, "file_id"), "file_id"))
    file_ids = payload.get("file_ids")
    if file_ids is not None:
        if not isinstance(file_ids, list):
            raise BadRequest("Invalid 'file_ids': expected an array of strings.", param="file_ids", code="invalid_type")
        found.extend((_id(value, f"file_ids[{i}]"), f"file_ids[{i}]") for i, value in enumerate(file_ids))
    files = payload.get("files")
    if files is not None:
        if not isinstance(files, list) or not all(isinstance(item, dict) for item in files):
            raise BadRequest("Invalid 'files': expected an array of objects.", param="files", code="invalid_type")
        found.extend(
            (_id(item.get("file_id"), f"files[{i}].file_id"), f"files[{i}].file_id") for i, item in enumerate(files)
        )
    if len(found) > _MAX_FILES:
        raise BadRequest(f"A request may name at most {_MAX_FILES} files.", param="file_ids")
    return found


def _id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Invalid '{param}': expected a file id (a string).", param=param, code="invalid_type")
    return value


async def _owned_file(
    services: ProxyServices, exchange: Exchange, file_id: str, param: str
) -> tuple[Owner, Upstream, Keys]:
    owner = await owned(services.ownership, exchange, file_id, "file")
    if owner is not None:
        upstream, keys = holder(services, exchange, owner)
        if upstream is not None:
            return owner, upstream, keys
    raise not_found("file", file_id, param)


async def _check_owned(
    services: ProxyServices, exchange: Exchange, kind: str, object_id: str, param: str, store: Owner
) -> None:
    """``object_id`` must be the caller's and held where the store is; else the 404 of an unknown id."""
    owner = await owned(services.ownership, exchange, object_id, kind)
    if owner is None or not owner.same_holder(store):
        raise not_found(kind, object_id, param)


async def _check_files(services: ProxyServices, exchange: Exchange, files: list[tuple[str, str]], store: Owner) -> None:
    for file_id, param in files:
        await _check_owned(services, exchange, "file", file_id, param, store)


async def _list(services: ProxyServices, exchange: Exchange, scope: Scope, send: Send) -> None:
    query: bytes = scope["query_string"]
    limit, after, order, _ = list_params(query, default_limit=_STORES_PAGE[0], max_limit=_STORES_PAGE[1])
    before = _before(query)
    tenant_id = exchange.ctx.principal.tenant_id
    if before is not None and after is None:
        # The page just before ``before``: read backwards from it, shown in the order asked for.
        backwards: Order = "asc" if order == "desc" else "desc"
        page = await services.objects.page(tenant_id, "vector_store", limit=limit, after=before, order=backwards)
        rows = list(reversed(page.rows))
    else:
        page = await services.objects.page(tenant_id, "vector_store", limit=limit, after=after, order=order)
        rows = page.rows
    data = [row.snapshot or {"id": row.id, "object": "vector_store"} for row in rows]
    await send_list(send, exchange, data, page.has_more)


def _before(query: bytes) -> str | None:
    try:
        pairs = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=32))
    except ValueError:
        return None  # list_params refused it already
    return pairs.get("before") or None
