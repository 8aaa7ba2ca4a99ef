"""The Batch API over a few seconds: validating, in progress, finalizing, completed, with real per-line answers.

A batch's state follows from the time since its create (``batch_seconds``, or ``metadata.dev_seconds``), so it moves
on whoever looks. When it is first seen finished, every line of its input runs through the dev upstream's own
endpoint (chat completions, completions, embeddings, responses, moderations) and the answers, with their usage, go
to an output file (errors to an error file), as OpenAI's do. ``metadata.dev_outcome`` = ``failed`` or ``expired``
ends it that way instead (no output); a cancel takes it to ``cancelling`` and, a moment later, ``cancelled``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tenantgate.devupstream.faults import NO_FAULTS, RateWindow
from tenantgate.devupstream.files import FileStore
from tenantgate.devupstream.wire import ApiError, Call, new_id, require

JsonEndpoint = Callable[[Call, dict[str, Any]], Awaitable[None]]
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/moderations")
_CANCEL_SECONDS = 1.0


@dataclass
class _Batch:
    view: dict[str, Any]
    seconds: float
    outcome: str = "completed"
    cancel_at: float | None = None
    finished: bool = False
    usage: dict[str, int] = field(default_factory=dict)


class Batches:
    def __init__(self, files: FileStore, endpoints: dict[str, JsonEndpoint], batch_seconds: float) -> None:
        self.files = files
        self.endpoints = endpoints
        self.batch_seconds = batch_seconds
        self._batches: dict[str, _Batch] = {}

    async def create(self, call: Call, payload: dict[str, Any]) -> None:
        input_file_id = require(payload, "input_file_id")
        endpoint = require(payload, "endpoint")
        window = require(payload, "completion_window")
        if endpoint not in ENDPOINTS:
            raise ApiError(400, f"Invalid 'endpoint': {endpoint!r}.", param="endpoint")
        if window != "24h":
            raise ApiError(400, "Invalid 'completion_window': only '24h' is supported.", param="completion_window")
        file = self.files.get(str(input_file_id))
        if file["purpose"] != "batch":
            raise ApiError(400, f"File {input_file_id} does not have purpose 'batch'.", param="input_file_id")
        metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else None
        total = sum(1 for line in self.files.read_lines(file["id"]) if line.strip())
        now = int(time.time())
        view: dict[str, Any] = {
            "id": new_id("batch_", 12), "object": "batch", "endpoint": endpoint, "errors": None,
            "input_file_id": file["id"], "completion_window": "24h", "status": "validating", "output_file_id": None,
            "error_file_id": None, "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
            "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "request_counts": {"total": total, "completed": 0, "failed": 0},
            "metadata": metadata, "usage": None,
        }  # fmt: skip
        seconds = self.batch_seconds
        if metadata and isinstance(metadata.get("dev_seconds"), str):
            with contextlib.suppress(ValueError):
                seconds = max(0.0, float(metadata["dev_seconds"]))
        outcome = metadata.get("dev_outcome") if metadata else None
        batch = _Batch(view, seconds, outcome if outcome in ("failed", "expired") else "completed")
        self._batches[view["id"]] = batch
        await call.json(200, view)

    def _get(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    async def retrieve(self, call: Call, batch_id: str) -> None:
        await call.json(200, await self._advance(self._get(batch_id)))

    async def cancel(self, call: Call, batch_id: str) -> None:
        batch = self._get(batch_id)
        view = await self._advance(batch)
        if view["status"] in ("completed", "failed", "expired", "cancelled"):
            raise ApiError(409, f"Cannot cancel a batch with status '{view['status']}'.")
        if batch.cancel_at is None:
            batch.cancel_at = time.time() + _CANCEL_SECONDS
            batch.view = {**view, "status": "cancelling", "cancelling_at": int(time.time())}
        await call.json(200, batch.view)

    async def list(self, call: Call) -> None:
        data = [await self._advance(batch) for batch in reversed(self._batches.values())]
        await call.json(200, {"object": "list", "data": data, "has_more": False})

    async def _advance(self, batch: _Batch) -> dict[str, Any]:
        """The batch as it stands now; the first look after its end writes its output."""
        if batch.finished:
            return batch.view
        now = time.time()
        view = batch.view
        created = view["created_at"]
        if batch.cancel_at is not None:
            if now >= batch.cancel_at:
                batch.finished = True
                batch.view = {**view, "status": "cancelled", "cancelled_at": int(now)}
            return batch.view
        if now < created + batch.seconds * 0.2:
            return view
        if now < created + batch.seconds * 0.8:
            batch.view = {**view, "status": "in_progress", "in_progress_at": view["in_progress_at"] or int(now)}
            return batch.view
        if now < created + batch.seconds:
            batch.view = {**view, "status": "finalizing", "finalizing_at": view["finalizing_at"] or int(now)}
            return batch.view
        batch.finished = True
        if batch.outcome == "failed":
            errors = {"object": "list", "data": [{"code": "dev_outcome", "message": "Failed as asked.", "line": None}]}
            batch.view = {**view, "status": "failed", "failed_at": int(now), "errors": errors}
        elif batch.outcome == "expired":
            batch.view = {**view, "status": "expired", "expired_at": int(now)}
        else:
            batch.view = await self._run(batch, int(now))
        return batch.view

    async def _run(self, batch: _Batch, now: int) -> dict[str, Any]:
        view = batch.view
        outputs: list[bytes] = []
        errors: list[bytes] = []
        usage = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0}
        for raw in self.files.read_lines(view["input_file_id"]):
            if not raw.strip():
                continue
            request = orjson.loads(raw)
            status, body = await self._answer(view["endpoint"], request.get("body") or {})
            line = {
                "id": new_id("batch_req_", 12),
                "custom_id": request.get("custom_id"),
                "response": {"status_code": status, "request_id": new_id("req_", 16), "body": body},
                "error": None,
            }
            (outputs if status == 200 else errors).append(orjson.dumps(line) + b"\n")
            counted: dict[str, Any] = body["usage"] if status == 200 and isinstance(body.get("usage"), dict) else {}
            usage["input_tokens"] += counted.get("prompt_tokens", counted.get("input_tokens", 0)) or 0
            usage["output_tokens"] += counted.get("completion_tokens", counted.get("output_tokens", 0)) or 0
        output = self.files.add(f"{view['id']}_output.jsonl", "batch_output", b"".join(outputs)) if outputs else None
        error = self.files.add(f"{view['id']}_error.jsonl", "batch_output", b"".join(errors)) if errors else None
        return {
            **view,
            "status": "completed",
            "in_progress_at": view["in_progress_at"] or now,
            "finalizing_at": view["finalizing_at"] or now,
            "completed_at": now,
            "output_file_id": output["id"] if output else None,
            "error_file_id": error["id"] if error else None,
            "request_counts": {"total": len(outputs) + len(errors), "completed": len(outputs), "failed": len(errors)},
            "usage": {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            },
        }

    async def _answer(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """What the dev upstream answers to one line's request, captured instead of sent."""
        handler = self.endpoints[endpoint.removeprefix("/v1")]
        captured: dict[str, Any] = {"status": 0, "body": b""}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            else:
                captured["body"] += message.get("body", b"")

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        scope = {"type": "http", "method": "POST", "path": endpoint, "headers": []}
        call = Call(scope, receive, send, NO_FAULTS, 0.0, RateWindow(), b"dev-batch")
        try:
            await handler(call, {**body, "stream": False})
        except ApiError as exc:
            error = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
            return exc.status, {"error": error}
        return captured["status"], orjson.loads(captured["body"])
