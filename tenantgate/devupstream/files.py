"""Files and Uploads as OpenAI keeps them: one account's files, their contents on disk, uploads in parts.

Contents go to a temporary directory as they stream in and are streamed back from it, so a large file costs the
dev upstream no memory either. Everything is one account's (the dev upstream has no tenants; the gateway does).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantgate.devupstream.multipart import read_upload
from tenantgate.devupstream.wire import ApiError, Call, new_id, require

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024 * 1024
UPLOAD_SECONDS = 3600
PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_CHUNK = 64 * 1024


def no_such_file(file_id: str) -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", param="id")


@dataclass
class _Upload:
    view: dict[str, Any]
    parts: dict[str, Path] = field(default_factory=dict)


class FileStore:
    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, _Upload] = {}

    def _path(self, object_id: str) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="tg-devupstream-")
        return Path(self._dir.name) / object_id

    # -- the store, also used by batches --------------------------------------------------------------------------

    def add(
        self, filename: str, purpose: str, content: bytes | None = None, source: Path | None = None
    ) -> dict[str, Any]:
        file_id = new_id("file-", 12)
        path = self._path(file_id)
        if source is not None:
            source.rename(path)
        else:
            path.write_bytes(content or b"")
        now = int(time.time())
        file = {
            "id": file_id, "object": "file", "bytes": path.stat().st_size, "created_at": now, "filename": filename,
            "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None,
        }  # fmt: skip
        self.files[file_id] = file
        return file

    def get(self, file_id: str) -> dict[str, Any]:
        file = self.files.get(file_id)
        if file is None:
            raise no_such_file(file_id)
        return file

    def read_lines(self, file_id: str) -> Iterator[bytes]:
        self.get(file_id)
        with self._path(file_id).open("rb") as handle:
            yield from handle

    # -- Files API ------------------------------------------------------------------------------------------------

    async def create(self, call: Call) -> None:
        target = self._path(new_id("incoming-", 8))
        with target.open("wb") as handle:
            upload = await read_upload(call.scope, call.receive, MAX_FILE_BYTES, sink=handle.write)
        purpose = upload.get("purpose")
        if upload.filename is None:
            target.unlink()
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        if purpose not in PURPOSES:
            target.unlink()
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        await call.json(200, self.add(upload.filename, purpose, source=target))

    async def list(self, call: Call, query: dict[str, str]) -> None:
        files = [f for f in self.files.values() if query.get("purpose") in (None, f["purpose"])]
        await call.json(200, {"object": "list", "data": files, "has_more": False})

    async def retrieve(self, call: Call, file_id: str) -> None:
        await call.json(200, self.get(file_id))

    async def delete(self, call: Call, file_id: str) -> None:
        self.get(file_id)
        del self.files[file_id]
        self._path(file_id).unlink(missing_ok=True)
        await call.json(200, {"id": file_id, "object": "file", "deleted": True})

    async def content(self, call: Call, file_id: str) -> None:
        file = self.get(file_id)
        await call.start(200, b"application/octet-stream", extra=[(b"content-length", str(file["bytes"]).encode())])
        with self._path(file_id).open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                await call.send({"type": "http.response.body", "body": chunk, "more_body": True})
        await call.send({"type": "http.response.body", "body": b""})

    # -- Uploads API ----------------------------------------------------------------------------------------------

    def _upload(self, upload_id: str) -> _Upload:
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise ApiError(404, f"No upload found with id '{upload_id}'.", param="upload_id")
        return upload

    async def create_upload(self, call: Call, payload: dict[str, Any]) -> None:
        size, filename, purpose = require(payload, "bytes"), require(payload, "filename"), require(payload, "purpose")
        require(payload, "mime_type")
        if not isinstance(size, int) or size < 0 or purpose not in PURPOSES or not isinstance(filename, str):
            raise ApiError(400, "Invalid upload: bytes, filename or purpose.")
        now = int(time.time())
        view = {
            "id": new_id("upload_", 12), "object": "upload", "bytes": size, "created_at": now, "filename": filename,
            "purpose": purpose, "status": "pending", "expires_at": now + UPLOAD_SECONDS, "file": None,
        }  # fmt: skip
        self.uploads[view["id"]] = _Upload(view)
        await call.json(200, view)

    async def add_part(self, call: Call, upload_id: str) -> None:
        upload = self._upload(upload_id)
        if upload.view["status"] != "pending":
            raise ApiError(400, f"Upload {upload_id} is {upload.view['status']}.")
        part_id = new_id("part_", 12)
        path = self._path(part_id)
        with path.open("wb") as handle:
            await read_upload(call.scope, call.receive, MAX_PART_BYTES, file_field="data", sink=handle.write)
        upload.parts[part_id] = path
        await call.json(
            200, {"id": part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": upload_id}
        )

    async def complete(self, call: Call, upload_id: str, payload: dict[str, Any]) -> None:
        upload = self._upload(upload_id)
        part_ids = require(payload, "part_ids")
        if upload.view["status"] != "pending":
            raise ApiError(400, f"Upload {upload_id} is {upload.view['status']}.")
        if not isinstance(part_ids, list) or any(p not in upload.parts for p in part_ids):
            raise ApiError(400, "Invalid 'part_ids': every part must belong to this upload.", param="part_ids")
        target = self._path(new_id("assembled-", 8))
        with target.open("wb") as out:
            for part_id in part_ids:
                with upload.parts[part_id].open("rb") as part:
                    while chunk := part.read(_CHUNK):
                        out.write(chunk)
        if target.stat().st_size != upload.view["bytes"]:
            size = target.stat().st_size
            target.unlink()
            raise ApiError(400, f"The parts hold {size} bytes; the upload was created for {upload.view['bytes']}.")
        for path in upload.parts.values():
            path.unlink(missing_ok=True)
        file = self.add(upload.view["filename"], upload.view["purpose"], source=target)
        upload.view = {**upload.view, "status": "completed", "file": file}
        await call.json(200, upload.view)

    async def cancel_upload(self, call: Call, upload_id: str) -> None:
        upload = self._upload(upload_id)
        if upload.view["status"] != "pending":
            raise ApiError(400, f"Upload {upload_id} is {upload.view['status']}.")
        for path in upload.parts.values():
            path.unlink(missing_ok=True)
        upload.view = {**upload.view, "status": "cancelled"}
        await call.json(200, upload.view)
