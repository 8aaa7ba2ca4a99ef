"""The Files and Uploads APIs: uploads streamed through, objects reachable by their owner only, lists from the index.

``POST /v1/files`` and ``POST /v1/uploads/{id}/parts`` stream the caller's multipart body to the upstream as it
arrives (never held whole, so a large upload keeps a worker's memory flat), cut off at the size limits; the gateway
reads nothing of the form, so there is nothing two parsers could read differently: what the file is (purpose,
size, name) comes from the upstream's answer. The answer's ids become the caller's (proxy/object_answers.py) before
the caller sees them. ``GET /v1/files`` is answered from the tenant's index, never by the shared upstream account.

The tenant's file count and storage limits are held before anything is forwarded (tenants/file_room.py): a direct
upload holds one file and as many bytes as its file may have (never its form's overhead: ``_file_at_most``), an
upload's create one file and its declared bytes (the open upload counts from then on), an upload's complete its bytes
again; each hold is given back once the upstream answered and the index has the file, or once the request failed.
Parallel uploads cannot share the last room.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import BadRequest, GatewayError, PayloadTooLarge
from tenantgate.platform.proxy.http import read_body
from tenantgate.platform.proxy.multipart import FormReader
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
from tenantgate.tenants.file_room import FileLimits, Hold

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_FORM_SLACK = 64 * 1024
"""Bytes a multipart body may carry beyond its file (part headers, the purpose field, the boundaries)."""
_MAX_JSON = 64 * 1024
_MAX_PARTS = 10_000
_FILES_PAGE = (10_000, 10_000)  # OpenAI's default and largest page of files


class ObjectLimitExceeded(BadRequest):
    code = "object_limit_exceeded"


class BatchNotSettled(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "batch_not_settled"


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


def _limits(services: ProxyServices) -> FileLimits:
    return FileLimits(services.settings.files_max_count, services.settings.files_max_storage_bytes)


async def _hold(
    services: ProxyServices, exchange: Exchange, *, least: int, most: int, excluding: str | None = None
) -> Hold:
    """Room for one more file of ``least`` to ``most`` bytes, held until the upload is over (tenants/file_room.py);
    400 when the tenant's files, open uploads and uploads in flight leave none."""
    limits = _limits(services)
    tenant_id = exchange.ctx.principal.tenant_id
    hold, used = await services.file_room.hold(tenant_id, limits, least=least, most=most, excluding=excluding)
    if hold is not None:
        return hold
    if used.files >= limits.count:
        raise ObjectLimitExceeded(
            f"This tenant keeps {used.files} files (with its uploads in progress), its limit; "
            "delete files before uploading more.",
            param="file",
        )
    raise ObjectLimitExceeded(
        f"This upload would take the tenant's files over their storage limit of {limits.bytes} bytes "
        f"({used.bytes} bytes stored or held by uploads in progress); delete files first.",
        param="bytes",
    )


class _Held:
    """A hold given back once: when the answer starts (its hooks have put the file in the index by then, so a client
    that uploads again at once finds its room), or when the request ends without an answer; shielded, so a client
    that leaves mid-upload still gives its room back."""

    def __init__(self, services: ProxyServices, exchange: Exchange, hold: Hold, send: Send) -> None:
        self._room = services.file_room
        self._hold: Hold | None = hold
        self._send = send
        exchange.file_hold = hold.id  # the row recording the file replaces the hold at once (object_answers.py)

    async def send(self, message: Message) -> None:
        await self.release()
        await self._send(message)

    async def release(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            await asyncio.shield(self._room.release(hold))


async def _upload_file(
    services: ProxyServices, exchange: Exchange, route: Route, scope: Scope, receive: Receive, send: Send
) -> None:
    form = upload_form(scope)
    most = services.settings.files_max_bytes
    declared = content_length(scope)
    read: list[Message] = []
    if declared is not None:
        if declared > most + _FORM_SLACK:
            raise PayloadTooLarge(f"The file exceeds the limit of {most} bytes.")
        read, file_at_most = await _file_at_most(form.boundary, declared, receive)
        most = min(most, file_at_most)  # hold no more room than the file can take: its body's overhead is none
    hold = await _hold(services, exchange, least=0, most=most)
    held = _Held(services, exchange, hold, send)
    try:
        file_limit = hold.bytes
        what = "The file" if file_limit >= most else "The file (with the tenant's files stored already)"
        if declared is not None and declared > file_limit + _FORM_SLACK:
            raise PayloadTooLarge(f"{what} exceeds the limit of {file_limit} bytes.")
        upstream, keys, _ = home(services, exchange)
        body = streamed_form(
            form, _replaying(read, receive), file_limit=file_limit, body_limit=file_limit + _FORM_SLACK, what=what
        )
        await forward_object(
            services, exchange, route, {}, upstream, keys, scope, receive, held.send, body=body, replayable=False
        )
    finally:
        await held.release()


async def _file_at_most(boundary: bytes, declared: int, receive: Receive) -> tuple[list[Message], int]:
    """The most bytes the file of a body of ``declared`` bytes can have, from the start of the body (read here, at
    most ``_FORM_SLACK`` bytes and a chunk before the first file's data begins, and given back to be streamed):
    exactly the file's bytes when the whole body has come, else the body less what precedes the first file's data
    and the shortest end a body can have (CRLF, ``--``, the boundary, ``--``). Parsed by a reader of its own: the
    form is still read once, from its first byte, by the reader that checks it as it streams."""
    finder = _FileStart(boundary)
    read: list[Message] = []
    while len(finder.head) <= _FORM_SLACK:
        message = await receive()
        read.append(message)
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return read, finder.whole(chunk)
        start = finder.add(chunk)
        if start is not None:
            return read, max(0, declared - start - len(boundary) - 6)
    return read, declared


class _FileStart:
    """Where the first file part's data begins in a form's first bytes: the form is fed to a reader one part at a
    time (up to each delimiter, which no part's data can hold), so the reader says which part is a file, and that
    part's data begins after its headers' blank line. A body that is no form is refused here, before room is held."""

    def __init__(self, boundary: bytes) -> None:
        self.reader = FormReader(boundary)
        self.delimiter = b"\r\n--" + boundary
        self.head = bytearray()
        self._fed = 0

    def add(self, chunk: bytes) -> int | None:
        self.head += chunk
        while (cut := self.head.find(self.delimiter, self._fed + 1)) >= 0:
            part = self._fed
            self.reader.feed(bytes(self.head[part:cut]))
            self._fed = cut
            if self.reader.in_file:
                blank = self.head.find(b"\r\n\r\n", part)
                return blank + 4 if 0 <= blank < cut else part  # (no blank line: the part's start, less is safe)
        return None

    def whole(self, chunk: bytes) -> int:
        """The file bytes of a body that has come whole (its last chunk)."""
        self.head += chunk
        self.reader.feed(bytes(self.head[self._fed :]))
        return self.reader.file_bytes


def _replaying(read: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already read first."""

    async def replay() -> Message:
        return read.pop(0) if read else await receive()

    return replay


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
    held = _Held(services, exchange, await _hold(services, exchange, least=size, most=size), send)
    try:  # once answered, the open upload counts from its index row (its declared bytes)
        upstream, keys, _ = home(services, exchange)
        await forward_object(services, exchange, route, {}, upstream, keys, scope, receive, held.send, body=raw)
    finally:
        await held.release()


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
        part = await services.ownership.owner(part_id, asker=owner.tenant_id)
        if part is None or not part.same_holder(owner) or part.kind not in (None, "upload_part"):
            raise not_found("upload_part", part_id, f"part_ids[{index}]")
    # An open upload counts already (one file, its declared bytes); its complete is checked again all the same, as
    # one hold in its place, so an upload opened before a limit was lowered cannot complete over it.
    upload_id = params["upload_id"]
    row = await services.objects.get(exchange.ctx.principal.tenant_id, upload_id)
    declared = _declared_bytes(row.bytes, row.snapshot) if row is not None else 0
    held = _Held(
        services, exchange, await _hold(services, exchange, least=declared, most=declared, excluding=upload_id), send
    )
    try:
        await forward_object(services, exchange, route, params, upstream, keys, scope, receive, held.send, body=raw)
    finally:
        await held.release()


def _declared_bytes(stored: int | None, snapshot: dict[str, Any] | None) -> int:
    """An open upload's bytes: as indexed, or (a row indexed before its bytes were kept) as the upstream showed it."""
    if stored is not None:
        return stored
    shown = (snapshot or {}).get("bytes")
    return shown if isinstance(shown, int) and not isinstance(shown, bool) and shown >= 0 else 0


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
    owner, upstream, keys = await owned_holder(services, exchange, kind, object_id)
    if route.method == "DELETE" and services.settler is not None:
        # A batch's output is billed from the file: read before it goes, or the delete waits (settlement.py).
        unsettled = await services.settler.settle_before_deleting(owner.tenant_id, object_id)
        if unsettled is not None:
            raise BatchNotSettled(
                f"The file '{object_id[:256]}' is an output of batch '{unsettled[:256]}', whose usage is still being "
                "recorded; try again shortly.",
                param="file_id",
                headers={"retry-after": "5"},
            )
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
