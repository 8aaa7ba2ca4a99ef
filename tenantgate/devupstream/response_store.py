"""Responses the dev upstream keeps (``store: true``), so retrieval, deletion, input items, cancellation and
``previous_response_id`` behave as on OpenAI. Bounded: the oldest are forgotten first."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tenantgate.devupstream.wire import new_id


@dataclass
class StoredResponse:
    response: dict[str, Any]  # the finished response
    input_items: list[dict[str, Any]]
    ready_at: float = 0.0  # when a background response finishes (epoch seconds)
    cancelled: bool = False

    def view(self, now: float | None = None) -> dict[str, Any]:
        """The response as a client sees it now: a background response is in progress until it is ready."""
        response = self.response
        if not response.get("background"):
            return response
        if self.cancelled:
            return {**response, "status": "cancelled", "output": [], "usage": None, "completed_at": None}
        if (time.time() if now is None else now) < self.ready_at:
            return {**response, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
        return response


class ResponseStore:
    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, stored: StoredResponse) -> None:
        self._items[stored.response["id"]] = stored
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None


def input_items(value: object) -> list[dict[str, Any]]:
    """The request's ``input`` as the items ``GET /v1/responses/{id}/input_items`` lists (each with an id)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items: list[dict[str, Any]] = []
    for raw in value if isinstance(value, list) else []:
        if not isinstance(raw, dict):
            continue
        item = dict(raw)
        if "role" in item and item.get("type", "message") == "message":
            content = item.get("content")
            if isinstance(content, str):
                kind = "output_text" if item["role"] == "assistant" else "input_text"
                item["content"] = [{"type": kind, "text": content}]
            item.setdefault("type", "message")
            item.setdefault("status", "completed")
            item.setdefault("id", new_id("msg_", 25))
        else:
            item.setdefault("id", new_id("item_", 25))
        items.append(item)
    return items


def items_text(items: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for item in items:
        content = item.get("content")
        if isinstance(content, list):
            parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        elif isinstance(item.get("output"), str):
            parts.append(item["output"])
    return " ".join(parts)


def page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """One page of input items, with OpenAI's ``after``/``limit``/``order`` (newest first by default)."""
    ordered = items if query.get("order") == "asc" else list(reversed(items))
    after = query.get("after")
    if after:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = min(100, max(1, int(query.get("limit", "20"))))
    except ValueError:
        limit = 20
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }
