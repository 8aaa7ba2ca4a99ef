"""The dev upstream with a Files API that counts what it is sent and keeps none of it, for bench/upload.py.

    python -m bench.discard_upstream --port 18100

The dev upstream writes every upload to a temporary directory (tenantgate/devupstream/files.py), and refuses files
over OpenAI's 512 MB: a 1 GiB upload through it would measure its disk and its limit. Here ``POST /v1/files`` and
``POST /v1/uploads/{id}/parts`` read the multipart body through the dev upstream's own parser with no sink, so the
file's bytes are counted and dropped; the answers are the dev upstream's shapes, with those counts as ``bytes``.
Everything else (chat for the harness's preflight, retrieve, delete) is the dev upstream's.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import uvicorn

from tenantgate.devupstream import DevUpstream
from tenantgate.devupstream.files import PURPOSES, FileStore
from tenantgate.devupstream.multipart import read_upload
from tenantgate.devupstream.wire import ApiError, Call, new_id, require

MAX_FILE_BYTES = 1 << 40  # no limit of its own: the gateway's limits are what the benchmark runs into
MAX_PART_BYTES = 64 * 1024 * 1024


class DiscardingFiles(FileStore):
    """Files and upload parts measured, never stored: a file is its metadata only."""

    def __init__(self) -> None:
        super().__init__()
        self.part_bytes: dict[str, int] = {}

    def _record(self, filename: str, purpose: str, size: int) -> dict[str, Any]:
        file: dict[str, Any] = {
            "id": new_id("file-", 12), "object": "file", "bytes": size, "created_at": int(time.time()),
            "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
            "status_details": None,
        }  # fmt: skip
        self.files[file["id"]] = file
        return file

    async def create(self, call: Call) -> None:
        upload = await read_upload(call.scope, call.receive, MAX_FILE_BYTES)
        purpose = upload.get("purpose")
        if upload.filename is None:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        if purpose not in PURPOSES:
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        await call.json(200, self._record(upload.filename, purpose, upload.file_size))

    async def delete(self, call: Call, file_id: str) -> None:
        self.get(file_id)
        del self.files[file_id]
        await call.json(200, {"id": file_id, "object": "file", "deleted": True})

    async def add_part(self, call: Call, upload_id: str) -> None:
        upload = self._upload(upload_id)
        if upload.view["status"] != "pending":
            raise ApiError(400, f"Upload {upload_id} is {upload.view['status']}.")
        part = await read_upload(call.scope, call.receive, MAX_PART_BYTES, file_field="data")
        part_id = new_id("part_", 12)
        self.part_bytes[part_id] = part.file_size
        upload.parts[part_id] = self._path(part_id)  # never written: only which parts are this upload's
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
        size = sum(self.part_bytes.pop(p, 0) for p in part_ids)
        if size != upload.view["bytes"]:
            raise ApiError(400, f"The parts hold {size} bytes; the upload was created for {upload.view['bytes']}.")
        file = self._record(upload.view["filename"], upload.view["purpose"], size)
        upload.view = {**upload.view, "status": "completed", "file": file}
        await call.json(200, upload.view)


def create_app() -> DevUpstream:
    app = DevUpstream()
    app.files = DiscardingFiles()
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.discard_upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
