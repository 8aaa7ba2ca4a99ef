"""Multipart uploads (audio transcriptions/translations) streamed through without holding whole files, read once.

The gateway needs one small field, ``model``, for routing, allow-lists and metering. SDKs send form fields before the
file, so the gateway reads only until that field is complete, then streams the rest of the upload to the upstream as
it arrives. Bodies that fit in ``_HEAD_LIMIT`` are held whole, which also lets them be retried; a streamed upload
cannot be replayed, so it gets one attempt.

Every byte, held or streamed, goes through a real multipart parser (python-multipart, Starlette's), so the gateway
reads the body the way a server does, not with a pattern over the bytes. Read once: a form field that is not an
array (``name[]``) may appear only once, and a part must name itself exactly once (``name=``, no ``name*=``); else
400. Otherwise a key allowed only ``whisper-1`` could send ``model=whisper-1`` for the gateway's check and meter
and a second ``model`` for an upstream that keeps the last one. A duplicate found while streaming aborts the upload:
the upstream's request is cut off before its end, so it never runs, and the caller gets the 400.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import Receive, Scope

from tenantgate.platform.errors import BadRequest, PayloadTooLarge
from tenantgate.platform.proxy.http import ClientDisconnected

_HEAD_LIMIT = 1024 * 1024
_FIELD_VALUE_LIMIT = 64 * 1024
"""Values of text fields kept (model, stream, ...); longer ones are not needed and not kept."""
# The one shape of a multipart Content-Type the gateway accepts: the media type and exactly one parameter, the
# boundary (RFC 2046's characters, quoted or not), as every SDK, curl and browser sends it. Anything else - a second
# parameter, a second boundary, ``xboundary=``, a boundary inside another parameter's quotes - could make another
# parser read another boundary, and with it another form than the one the gateway checked.
_CONTENT_TYPE = re.compile(
    rb"multipart/form-data[ \t]*;[ \t]*boundary=(?:\"([0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?])\""
    rb"|([0-9A-Za-z'+_\-.]{1,70}))[ \t]*",  # unquoted: characters both a token and a boundary may hold
    re.IGNORECASE,
)


def _bad(message: str, param: str | None = None) -> BadRequest:
    return BadRequest(message, param=param, code="invalid_multipart")


@dataclass(slots=True)
class _FormReader:
    """Feeds a python-multipart parser and keeps what the gateway reads of the form: field names and small values."""

    boundary: bytes
    fields: dict[str, str] = field(default_factory=dict)
    """Text fields (no filename), first occurrence; a repeated non-array name is refused on arrival."""
    _seen: set[str] = field(default_factory=set)
    _header_field: bytes = b""
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _name: str | None = None
    _is_file: bool = False
    _value: bytearray = field(default_factory=bytearray)
    _parser: MultipartParser | None = None
    _error: BadRequest | None = None
    file_bytes: int = 0
    """Bytes of file parts so far (what an upload's size limits count)."""

    def __post_init__(self) -> None:
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_name,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self._parser = MultipartParser(self.boundary, callbacks)  # type: ignore[arg-type]

    @property
    def in_file(self) -> bool:
        """Whether the part being read is a file (its headers are read and name a ``filename``)."""
        return self._name is not None and self._is_file

    def names(self, name: str) -> bool:
        """Whether any part so far, text or file, is named ``name``."""
        return name in self._seen

    def feed(self, chunk: bytes) -> None:
        assert self._parser is not None
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise _bad("The multipart/form-data body could not be parsed.") from None
        if self._error is not None:
            raise self._error

    def _part_begin(self) -> None:
        self._headers, self._header_field, self._name, self._value = {}, b"", None, bytearray()

    def _header_name(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._header_field.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]

    def _header_end(self) -> None:
        self._header_field = b""

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        params = [p.split(b"=", 1)[0].strip().lower() for p in disposition.split(b";")[1:]]
        if params.count(b"name") != 1 or b"name*" in params:
            self._fail(_bad("Each part of a multipart/form-data body must have exactly one name= parameter."))
            return
        _, options = parse_options_header(disposition)
        try:
            name = options[b"name"].decode("utf-8")
        except UnicodeDecodeError:
            self._fail(_bad("A multipart field name is not valid UTF-8."))
            return
        if name in self._seen and not name.endswith("[]"):
            self._fail(_bad(f"The form field {name!r} appears more than once; send it once.", param=name))
            return
        self._seen.add(name)
        self._name, self._is_file = name, b"filename" in options

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.file_bytes += end - start
        elif self._name is not None and len(self._value) < _FIELD_VALUE_LIMIT:
            self._value += data[start:end]

    def _part_end(self) -> None:
        if self._name is not None and not self._is_file and self._name not in self.fields:
            try:
                self.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(_bad(f"The form field {self._name!r} is not valid UTF-8.", param=self._name))

    def _fail(self, error: BadRequest) -> None:
        self._error = self._error or error
        self._name = None


FormReader = _FormReader


@dataclass(slots=True)
class MultipartUpload:
    head: bytes
    model: str | None
    complete: bool
    form: _FormReader
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
                self.form.feed(chunk)  # a duplicate field raises here, before the chunk goes upstream
                yield chunk
            more = message.get("more_body", False)


def form_reader(scope: Scope) -> FormReader:
    """A reader of a multipart body's form (400 unless the request is multipart/form-data with a boundary)."""
    return _FormReader(_boundary(scope))


def _boundary(scope: Scope) -> bytes:
    """The boundary of the request's one ``Content-Type: multipart/form-data; boundary=...`` header (400 for any other
    shape: see ``_CONTENT_TYPE``); the header is forwarded as sent, so the upstream reads the same boundary."""
    types = [value for name, value in scope["headers"] if name == b"content-type"]
    if len(types) != 1 or not types[0].lower().startswith(b"multipart/form-data"):
        raise BadRequest("This endpoint expects a multipart/form-data upload.")
    match = _CONTENT_TYPE.fullmatch(types[0])
    if match is None:
        raise _bad(
            "The Content-Type of a multipart/form-data upload must be 'multipart/form-data; boundary=...' with no "
            "other parameter.",
            param="Content-Type",
        )
    return match.group(1) or match.group(2)


def with_field(upload: MultipartUpload, name: str, value: str) -> bytes:
    """A complete upload's body with one more text field first (the default model a route fills in), so the
    upstream serves what the gateway checked and meters, not a default of its own choosing."""
    assert upload.complete, "only a body read whole can be extended"
    if upload.form.names(name):
        raise _bad(f"The form field {name!r} must be a text field.", param=name)
    disposition = f'--{upload.form.boundary.decode("latin-1")}\r\nContent-Disposition: form-data; name="{name}"'
    return disposition.encode("latin-1") + b"\r\n\r\n" + value.encode() + b"\r\n" + upload.head


async def read_upload(scope: Scope, receive: Receive, limit: int) -> MultipartUpload:
    form = _FormReader(_boundary(scope))
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        if chunk:
            form.feed(chunk)
            chunks.append(chunk)
        if "model" in form.fields and size >= _HEAD_LIMIT:
            break
    return MultipartUpload(
        head=b"".join(chunks),
        model=form.fields.get("model"),
        complete=not more,
        form=form,
        _receive=receive,
        _limit=limit,
    )
