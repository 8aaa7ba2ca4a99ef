"""The Files and Uploads APIs: uploads streamed through, objects reachable by their owner only, lists from the index.

``POST /v1/files`` and ``POST /v1/uploads/{id}/parts`` stream the caller's multipart body to the upstream as it
arrives (never held whole, so a large upload keeps a worker's memory flat), cut off at the size limits; the gateway
reads nothing of the form, so there is nothing two parsers could read differently: what the file is (purpose,
size, name) comes from the upstream's answer. The answer's ids become the caller's (proxy/object_answers.py) before
the caller sees them. ``GET /v1/files`` is answered from the tenant's index, never by the shared upstream account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import BadRequest, PayloadTooLarge
from tenantgate.platform.proxy.http import read_body
from tenantgate.platform.proxy.objects import (
    content_length,
    forward_object,
    home,
    list_params,
    owned_holder,
    read_json,
    send_list,
    streamed_form,
    upload_form,
)
from tenantgate.platform.proxy.routes import LIST_FILES, Route
from tenantgate.platform.proxy.stored import not_found

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_FORM_SLACK = 64 * 1024
"""Bytes a multipart body may carry beyond its file (part headers, the purpose field, the boundaries)."""
_MAX_JSON = 64 * 1024
_MAX_PARTS = 10_000
_FILES_PAGE = (10_000, 10_000)  # OpenAI's default and largest page of files


class ObjectLimitExceeded(BadRequest):
    code = "object_limit_exceeded"


async def serve(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    template = route.template
    await services.hooks.admit(exchange)  # limits first: a refused caller costs no database read
    if route is LIST_FILES:
        await _list(services, exchange, scope, send)
    elif template == "/v1/files":
        await _upload_file(services, exchange, route, scope, receive, send)
    elif template == "/v1/uploads":
        await _create_upload(services, exchange, route, scope, receive, send)
    elif template == "/v1/uploads/{upload_id}/parts":
        await _add_part(services, exchange, route, params, scope, receive, send)
    elif template == "/v1/uploads/{upload_id}/complete":
        await _complete(services, exchange, route, params, scope, receive, send)
    else:
        await _pass(services, exchange, route, params, scope, receive, send)


async def _room(services: ProxyServices, exchange: Exchange, adding: int = 0) -> int:
    """Bytes the tenant may still store in files (after ``adding`` more); 400 when its file count is reached."""
    settings = services.settings
    storage = await services.objects.storage(exchange.ctx.principal.tenant_id)
    if storage.files >= settings.files_max_count:
        raise ObjectLimitExceeded(
            f"This tenant keeps {storage.files} files, its limit; delete files before uploading more.", param="file"
        )
    room = settings.files_max_storage_bytes - storage.bytes - adding
    if room < 0:
        raise ObjectLimitExceeded(
            f"This upload would take the tenant's files over their storage limit of "
            f"{settings.files_max_storage_bytes} bytes ({storage.bytes} bytes stored); delete files first.",
            param="bytes",
        )
    return room


async def _upload_file(
    services: ProxyServices, exchange: Exchange, route: Route, scope: Scope, receive: Receive, send: Send
) -> None:
    form = upload_form(scope)
    room = await _room(services, exchange)
    file_limit = min(services.settings.files_max_bytes, room)
    what = "The file" if file_limit < room else "The file (with the tenant's files stored already)"
    declared = content_length(scope)
    if declared is not None and declared > file_limit + _FORM_SLACK:
        raise PayloadTooLarge(f"{what} exceeds the limit of {file_limit} bytes.")
    upstream, keys, _ = home(services, exchange)
    body = streamed_form(form, receive, file_limit=file_limit, body_limit=file_limit + _FORM_SLACK, what=what)
    await forward_object(
        services, exchange, route, {}, upstream, keys, scope, receive, send, body=body, replayable=False
    )


async def _create_upload(
    services: ProxyServices, exchange: Exchange, route: Route, scope: Scope, receive: Receive, send: Send
) -> None:
    raw, payload = await read_json(scope, receive, _MAX_JSON)
    size = payload.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest("Invalid 'bytes': expected a non-negative integer.", param="bytes", code="invalid_type")
    most = services.settings.uploads_max_bytes
    if size > most:
        raise BadRequest(f"Invalid 'bytes': {size}. An upload can be at most {most} bytes.", param="bytes")
    await _room(services, exchange, adding=size)
    upstream, keys, _ = home(services, exchange)
    await forward_object(services, exchange, route, {}, upstream, keys, scope, receive, send, body=raw)


async def _add_part(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    _, upstream, keys = await owned_holder(services, exchange, "upload", params["upload_id"])
    exchange.created_under = params["upload_id"]
    form = upload_form(scope)
    limit = services.settings.upload_part_max_bytes
    declared = content_length(scope)
    if declared is not None and declared > limit + _FORM_SLACK:
        raise PayloadTooLarge(f"An upload part exceeds the limit of {limit} bytes.")
    body = streamed_form(form, receive, file_limit=limit, body_limit=limit + _FORM_SLACK, what="An upload part")
    await forward_object(
        services, exchange, route, params, upstream, keys, scope, receive, send, body=body, replayable=False
    )


async def _complete(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    owner, upstream, keys = await owned_holder(services, exchange, "upload", params["upload_id"])
    exchange.created_under = params["upload_id"]
    raw, payload = await read_json(scope, receive, _MAX_JSON)
    part_ids = payload.get("part_ids")
    if not isinstance(part_ids, list) or not all(isinstance(p, str) for p in part_ids):
        raise BadRequest("Invalid 'part_ids': expected an array of strings.", param="part_ids", code="invalid_type")
    if len(part_ids) > _MAX_PARTS:
        raise BadRequest(f"An upload may have at most {_MAX_PARTS} parts.", param="part_ids")
    for index, part_id in enumerate(part_ids):
        part = await services.ownership.owner(part_id)
        if part is None or not part.same_holder(owner):
            raise not_found("upload_part", part_id, f"part_ids[{index}]")
    await forward_object(services, exchange, route, params, upstream, keys, scope, receive, send, body=raw)


async def _pass(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Retrieve, delete and download a file, cancel an upload: for the owner, at the holder, as the upstream answers."""
    kind, object_id = ("file", params["file_id"]) if "file_id" in params else ("upload", params["upload_id"])
    _, upstream, keys = await owned_holder(services, exchange, kind, object_id)
    body = await read_body(scope, receive, _MAX_JSON) if route.method == "POST" else None
    content = route.template.endswith("/content")
    await forward_object(
        services, exchange, route, params, upstream, keys, scope, receive, send, body=body, stream_body=content
    )


async def _list(services: ProxyServices, exchange: Exchange, scope: Scope, send: Send) -> None:
    limit, after, order, purpose = list_params(
        scope["query_string"], default_limit=_FILES_PAGE[0], max_limit=_FILES_PAGE[1]
    )
    page = await services.objects.page(
        exchange.ctx.principal.tenant_id, "file", limit=limit, after=after, order=order, purpose=purpose
    )
    await send_list(
        send, exchange, [row.snapshot or {"id": row.id, "object": "file"} for row in page.rows], page.has_more
    )
