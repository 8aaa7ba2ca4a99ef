"""Chat completions the dev upstream keeps (``store: true``), so listing, retrieval, metadata updates, deletion and
the ``/messages`` list behave as on OpenAI. One account's completions (the gateway is who keeps tenants apart)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tenantgate.devupstream.wire import ApiError, Call

_MAX_METADATA = 16


def _not_found(completion_id: str) -> ApiError:
    return ApiError(404, f"Chat completion with id '{completion_id}' not found.", param="completion_id")


def _limit(query: dict[str, str], default: int = 20) -> int:
    try:
        return min(100, max(1, int(query.get("limit", str(default)))))
    except ValueError:
        raise ApiError(400, "Invalid 'limit': expected an integer.", param="limit") from None


def list_page(items: list[dict[str, Any]], query: dict[str, str], *, default_order: str) -> dict[str, Any]:
    """OpenAI's cursor page over ``items`` (oldest first as given): ``order``, ``after``, ``limit``."""
    order = query.get("order", default_order)
    ordered = items if order == "asc" else list(reversed(items))
    after = query.get("after")
    if after:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    limit = _limit(query)
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }


def check_metadata(value: object) -> dict[str, str]:
    """OpenAI's metadata: at most 16 string pairs (keys up to 64 characters, values up to 512)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > _MAX_METADATA:
        raise ApiError(400, "Invalid 'metadata': expected an object of at most 16 pairs.", param="metadata")
    for key, item in value.items():
        if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            raise ApiError(400, f"Invalid 'metadata.{key[:64]}': expected a string of at most 512.", param="metadata")
    return dict(value)


@dataclass
class StoredCompletion:
    completion: dict[str, Any]
    messages: list[dict[str, Any]]


class ChatStore:
    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._items: OrderedDict[str, StoredCompletion] = OrderedDict()

    def keep(self, payload: dict[str, Any], completion: dict[str, Any]) -> None:
        """A finished completion whose request said ``store: true``, with the request's messages and metadata."""
        completion_id = completion["id"]
        stored = {**completion, "metadata": check_metadata(payload.get("metadata")), "request_id": None}
        messages = []
        for index, message in enumerate(payload.get("messages") or ()):
            if isinstance(message, dict):
                content = message.get("content")
                messages.append(
                    {
                        "id": f"{completion_id}-{index}",
                        "role": message.get("role"),
                        "content": content if isinstance(content, str) else None,
                        "name": message.get("name"),
                        "content_parts": content if isinstance(content, list) else None,
                    }
                )
        self._items[completion_id] = StoredCompletion(stored, messages)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def _get(self, completion_id: str) -> StoredCompletion:
        stored = self._items.get(completion_id)
        if stored is None:
            raise _not_found(completion_id)
        return stored

    async def list(self, call: Call, query: dict[str, str]) -> None:
        model = query.get("model")
        wanted = {k[len("metadata[") : -1]: v for k, v in query.items() if k.startswith("metadata[") and k[-1] == "]"}
        items = [
            stored.completion
            for stored in self._items.values()
            if (model is None or stored.completion.get("model") == model)
            and all(stored.completion["metadata"].get(k) == v for k, v in wanted.items())
        ]
        await call.json(200, list_page(items, query, default_order="asc"))

    async def retrieve(self, call: Call, completion_id: str) -> None:
        await call.json(200, self._get(completion_id).completion)

    async def update(self, call: Call, completion_id: str, payload: dict[str, Any]) -> None:
        stored = self._get(completion_id)
        if "metadata" not in payload:
            raise ApiError(400, "Missing required parameter: 'metadata'.", param="metadata")
        stored.completion = {**stored.completion, "metadata": check_metadata(payload["metadata"])}
        await call.json(200, stored.completion)

    async def delete(self, call: Call, completion_id: str) -> None:
        if self._items.pop(completion_id, None) is None:
            raise _not_found(completion_id)
        await call.json(200, {"object": "chat.completion.deleted", "id": completion_id, "deleted": True})

    async def messages(self, call: Call, completion_id: str, query: dict[str, str]) -> None:
        await call.json(200, list_page(self._get(completion_id).messages, query, default_order="asc"))
