"""A streaming multipart/form-data reader for audio and file uploads.

The dev upstream needs the form fields, the file's name, size and first bytes (a WAV header gives the duration);
the file itself streams past into ``sink`` (a file on disk for the Files API) or is only counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import Receive, Scope

from tenantgate.devupstream.wire import ApiError

_MAX_FIELD_BYTES = 64 * 1024
_HEAD_BYTES = 64


@dataclass
class Upload:
    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    file_size: int = 0
    file_head: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, []) + self.fields.get(name + "[]", [])


class _Collector:
    """Callbacks for python-multipart's push parser: keeps fields, measures the one file."""

    def __init__(self, file_field: str = "file", sink: Callable[[bytes], object] | None = None) -> None:
        self.upload = Upload()
        self._file_field = file_field
        self._sink = sink
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self._disposition, self._is_file, self._data = b"", False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = b"filename" in options and self._name == self._file_field
        if self._is_file:
            self.upload.filename = options[b"filename"].decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            upload = self.upload
            if len(upload.file_head) < _HEAD_BYTES:
                upload.file_head += data[start : min(end, start + _HEAD_BYTES - len(upload.file_head))]
            upload.file_size += end - start
            if self._sink is not None:
                self._sink(data[start:end])
            return
        self._data += data[start:end]
        if len(self._data) > _MAX_FIELD_BYTES:
            raise ApiError(400, f"Form field '{self._name}' is too large.", param=self._name)

    def on_part_end(self) -> None:
        if not self._is_file:
            self.upload.fields.setdefault(self._name, []).append(self._data.decode("utf-8", "replace"))


async def read_upload(
    scope: Scope,
    receive: Receive,
    max_file_bytes: int,
    *,
    file_field: str = "file",
    sink: Callable[[bytes], object] | None = None,
) -> Upload:
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in options:
        shown = content_type.decode("latin-1") or "none"
        raise ApiError(
            400,
            f"Invalid Content-Type header ({shown}), expected multipart/form-data. (HINT: If you're using curl, "
            "you can pass -H 'Content-Type: multipart/form-data')",
        )
    collector = _Collector(file_field, sink)
    callbacks = {name: getattr(collector, name) for name in dir(_Collector) if name.startswith("on_")}
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "The client went away during the upload.")
            parser.write(message.get("body", b""))
            if collector.upload.file_size > max_file_bytes:
                raise ApiError(
                    413,
                    f"Maximum content size limit ({max_file_bytes}) exceeded ({collector.upload.file_size} bytes read)",
                )
            if not message.get("more_body"):
                break
        parser.finalize()
    except FormParserError:
        raise ApiError(400, "Could not parse multipart form.") from None
    return collector.upload
