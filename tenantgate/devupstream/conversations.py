"""Conversations as OpenAI keeps them: an object with metadata and an ordered list of items, which the caller adds
to directly (``/items``) or through the Responses API's ``conversation`` parameter (each turn's input and output
items are appended). One account's conversations (the gateway is who keeps tenants apart)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tenantgate.devupstream.response_store import input_items
from tenantgate.devupstream.stored_chat import check_metadata, list_page
from tenantgate.devupstream.wire import ApiError, Call, new_id

_MAX_ITEMS_PER_CALL = 20


def _not_found(conversation_id: str) -> ApiError:
    return ApiError(404, f"Conversation with id '{conversation_id}' not found.", param="conversation_id")


def _item_not_found(item_id: str) -> ApiError:
    return ApiError(404, f"Item with id '{item_id}' not found.", param="item_id")


@dataclass
class Conversation:
    view: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)


class Conversations:
    def __init__(self) -> None:
        self._conversations: dict[str, Conversation] = {}

    def get(self, conversation_id: str) -> Conversation:
        found = self._conversations.get(conversation_id)
        if found is None:
            raise _not_found(conversation_id)
        return found

    def _new_items(self, value: object) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > _MAX_ITEMS_PER_CALL:
            raise ApiError(400, "Invalid 'items': expected an array of at most 20 items.", param="items")
        return input_items(value)

    async def create(self, call: Call, payload: dict[str, Any]) -> None:
        items = self._new_items(payload.get("items"))
        view: dict[str, Any] = {
            "id": new_id("conv_", 24),
            "object": "conversation",
            "created_at": int(time.time()),
            "metadata": check_metadata(payload.get("metadata")),
        }
        self._conversations[view["id"]] = Conversation(view, items)
        await call.json(200, view)

    async def retrieve(self, call: Call, conversation_id: str) -> None:
        await call.json(200, self.get(conversation_id).view)

    async def update(self, call: Call, conversation_id: str, payload: dict[str, Any]) -> None:
        conversation = self.get(conversation_id)
        if "metadata" not in payload:
            raise ApiError(400, "Missing required parameter: 'metadata'.", param="metadata")
        conversation.view = {**conversation.view, "metadata": check_metadata(payload["metadata"])}
        await call.json(200, conversation.view)

    async def delete(self, call: Call, conversation_id: str) -> None:
        self.get(conversation_id)
        del self._conversations[conversation_id]
        await call.json(200, {"id": conversation_id, "object": "conversation.deleted", "deleted": True})

    async def add_items(self, call: Call, conversation_id: str, payload: dict[str, Any]) -> None:
        conversation = self.get(conversation_id)
        if "items" not in payload:
            raise ApiError(400, "Missing required parameter: 'items'.", param="items")
        items = self._new_items(payload["items"])
        conversation.items.extend(items)
        await call.json(
            200,
            {
                "object": "list",
                "data": items,
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None,
                "has_more": False,
            },
        )

    async def list_items(self, call: Call, conversation_id: str, query: dict[str, str]) -> None:
        await call.json(200, list_page(self.get(conversation_id).items, query, default_order="desc"))

    def _item(self, conversation_id: str, item_id: str) -> tuple[Conversation, int]:
        conversation = self.get(conversation_id)
        for index, item in enumerate(conversation.items):
            if item.get("id") == item_id:
                return conversation, index
        raise _item_not_found(item_id)

    async def retrieve_item(self, call: Call, conversation_id: str, item_id: str) -> None:
        conversation, index = self._item(conversation_id, item_id)
        await call.json(200, conversation.items[index])

    async def delete_item(self, call: Call, conversation_id: str, item_id: str) -> None:
        conversation, index = self._item(conversation_id, item_id)
        del conversation.items[index]
        await call.json(200, conversation.view)

    def turn(self, conversation_id: str, new_input: list[dict[str, Any]], output: list[dict[str, Any]]) -> None:
        """A Responses API turn in the conversation: its input items, then its output items, appended."""
        conversation = self._conversations.get(conversation_id)
        if conversation is not None:
            conversation.items.extend([*new_input, *output])
