"""An upstream that records every request exactly as it arrived (raw request target) and answers plausibly.

For isolation tests: what matters is what reached the upstream, byte for byte, with the platform's credentials.
Stored-object answers echo the id of the path, so a gateway that forwarded a request for another tenant's id would
show it in the answer too.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support.server import ServedApp


@dataclass(frozen=True)
class Seen:
    method: str
    raw_path: str
    query: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    """As received, in order, names lower-cased (a name sent twice is here twice)."""


@dataclass
class RecordingUpstream:
    """ASGI app; ``seen`` lists requests in arrival order. ``next_response_id`` names the next response it creates."""

    seen: list[Seen] = field(default_factory=list)
    next_response_id: str = "resp_recorded"
    next_vector_store_id: str = "vs_recorded"
    item_ids: list[str] = field(default_factory=list)
    base_url: str = ""
    """Set while served (``serve_recording``): where the gateway finds it, up to ``/v1``."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        with self._lock:
            headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
            self.seen.append(Seen(scope["method"], raw_path, scope["query_string"].decode("latin-1"), body, headers))
        status, payload = self._answer(scope["method"], scope["path"], body)
        data = orjson.dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        path = re.sub(r"^/openai/deployments/[^/]+", "/v1", path).replace("/openai/", "/v1/")
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if path == "/v1/responses" and method == "POST":
            output = [
                {"id": item, "type": "message", "role": "assistant", "status": "completed", "content": []}
                for item in self.item_ids
            ]
            return 200, {
                "id": self.next_response_id,
                "object": "response",
                "status": "completed",
                "model": "gpt-4o-mini",
                "output": output,
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            }
        if path.startswith("/v1/responses/"):
            response_id = path.split("/")[3]
            return 200, {"id": response_id, "object": "response", "status": "completed", "output": []}
        if path.startswith("/v1/vector_stores"):
            parts = path.split("/")
            store_id = parts[3] if len(parts) > 3 else self.next_vector_store_id
            return 200, {"id": store_id, "object": "vector_store", "status": "completed", "usage_bytes": 0}
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1}]}
        if path.startswith("/v1/models/"):
            return 200, {"id": path[len("/v1/models/") :], "object": "model", "created": 1, "owned_by": "system"}
        if path.startswith("/v1/"):
            return 200, {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [],
                "usage": usage,
            }
        return 404, {"error": {"message": f"Invalid URL ({method} {path})", "type": "invalid_request_error"}}


def serve_recording(upstream: RecordingUpstream) -> ServedApp:
    served = ServedApp(upstream, lifespan="off")
    upstream.base_url = served.url + "/v1"
    return served
