"""Multipart uploads (audio transcriptions/translations) streamed through without holding whole files.

The gateway needs one small field, ``model``, for routing and allow-lists. SDKs send form fields before the file,
so the gateway reads only until that field is complete, then streams the rest of the upload to the upstream as it
arrives. Bodies that fit in ``_HEAD_LIMIT`` are held whole, which also lets them be retried; a streamed upload
cannot be replayed, so it gets one attempt.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import Receive, Scope

from tenantgate.platform.errors import BadRequest, PayloadTooLarge
from tenantgate.platform.proxy.http import ClientDisconnected

_HEAD_LIMIT = 1024 * 1024
_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.IGNORECASE)


@dataclass(slots=True)
class MultipartUpload:
    head: bytes
    model: str | None
    complete: bool
    _receive: Receive
    _limit: int

    async def rest(self) -> AsyncIterator[bytes]:
        yield self.head
        size = len(self.head)
        more = not self.complete
        while more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {self._limit} bytes.")
            if chunk:
                yield chunk
            more = message.get("more_body", False)


def _boundary(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            if not value.lower().startswith(b"multipart/form-data"):
                break
            match = _BOUNDARY.search(value)
            if match:
                return match.group(1)
    raise BadRequest("This endpoint expects a multipart/form-data upload.")


def _field(buffer: bytes, boundary: bytes, name: bytes) -> str | None:
    pattern = re.compile(
        rb'Content-Disposition:[^\r\n]*\bname="'
        + re.escape(name)
        + rb'"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)\r\n--'
        + re.escape(boundary),
        re.IGNORECASE | re.DOTALL,
    )
    match = pattern.search(buffer)
    return match.group(1).decode("utf-8", "replace") if match else None


async def read_upload(scope: Scope, receive: Receive, limit: int) -> MultipartUpload:
    boundary = _boundary(scope)
    buffer = b""
    more = True
    model: str | None = None
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        buffer += message.get("body", b"")
        more = message.get("more_body", False)
        if len(buffer) > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        if model is None:
            model = _field(buffer, boundary, b"model")
        if model is not None and len(buffer) >= _HEAD_LIMIT:
            break
    return MultipartUpload(head=buffer, model=model, complete=not more, _receive=receive, _limit=limit)
