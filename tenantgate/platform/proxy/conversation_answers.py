"""What the upstream's answers about stored chat completions and conversations mean for the tenant that gets them
(run by ``object_answers.ObjectAnswersHook``, before the caller sees the answer).

A chat completion made with ``store: true`` (streamed or not: its id is in every chunk) becomes the caller's, first
owner wins; its index row (what ``GET /v1/chat/completions`` lists and filters on: model and metadata) is added
without the chat path waiting for the database (``ObjectIndex.add_later``). A created conversation becomes the
caller's; the items an answer shows under the caller's conversation (added, listed, retrieved), or as the input
items of the caller's response, become that conversation's (response's) owner's: a cursor into those lists must be
one of them (cursors.py). An answer about a completion or conversation that is not the caller's (an upstream that
lies) is withheld, as for every other object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tenantgate.core.exchange import Exchange
from tenantgate.tenants.object_index import Entry, ObjectIndex
from tenantgate.tenants.objects import ObjectOwnership, Owner

CHAT_COMPLETION = "chat_completion"

Claim = Callable[[Exchange, Any, str, Owner], Awaitable[bool]]
OwnerOf = Callable[[Exchange], Awaitable[Owner]]
Withhold = Callable[[Exchange], None]


def completion_entry(
    owner: Owner,
    completion_id: str,
    created: int,
    *,
    model: str | None,
    response_model: str | None,
    metadata: dict[str, Any],
) -> Entry:
    """The index row of a stored chat completion (what the list filters on: model and metadata)."""
    return Entry(
        id=completion_id,
        tenant_id=owner.tenant_id,
        kind=CHAT_COMPLETION,
        upstream=owner.upstream,
        account=owner.account,
        api_key_id=owner.api_key_id,
        created=created,
        state={"model": model, "response_model": response_model, "metadata": metadata},
    )


class ConversationAnswers:
    def __init__(
        self, ownership: ObjectOwnership, index: ObjectIndex, *, claim: Claim, owner_of: OwnerOf, withhold: Withhold
    ) -> None:
        self.ownership = ownership
        self.index = index
        self._claim = claim
        self._owner_of = owner_of
        self._withhold = withhold
        self.handlers: dict[str, Callable[[Exchange, dict[str, Any]], Awaitable[None]]] = {
            "/v1/chat/completions/{completion_id}": self._completion_shown,
            "/v1/conversations": self._conversation_created,
            "/v1/conversations/{conversation_id}": self._conversation_shown,
            "/v1/conversations/{conversation_id}/items": self._items_shown,
            "/v1/conversations/{conversation_id}/items/{item_id}": self._item_shown,
            "/v1/responses/{response_id}/input_items": self._items_shown,
            "/v1/chat/completions/{completion_id}/messages": self._items_shown,
        }

    async def chat_completion(self, exchange: Exchange) -> None:
        """A chat completion answered: if it was stored, it is the caller's (and listed)."""
        payload = exchange.payload or {}
        completion_id = exchange.response_id
        if payload.get("store") is not True or not completion_id:
            return
        owner = await self._owner_of(exchange)
        if not await self._claim(exchange, completion_id, CHAT_COMPLETION, owner):
            return
        metadata = payload.get("metadata")
        self.index.add_later(
            completion_entry(
                owner,
                completion_id,
                int(exchange.started_at),
                model=exchange.model,
                response_model=exchange.response_model,
                metadata=metadata if isinstance(metadata, dict) else {},
            )
        )

    async def _mine(self, exchange: Exchange, object_id: Any) -> Owner | None:
        """The owner of an id an answer describes, if it is the caller's; else the answer is withheld."""
        if not isinstance(object_id, str):
            return None
        owner = await self.ownership.owner(object_id)
        if owner is None or owner.tenant_id != exchange.ctx.principal.tenant_id:
            self._withhold(exchange)
            return None
        return owner

    async def _completion_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        """Retrieved, updated or deleted: the index follows (deleted: out of lists; updated: new metadata)."""
        completion_id = answer.get("id")
        owner = await self._mine(exchange, completion_id)
        if owner is None or not isinstance(completion_id, str):
            return
        if answer.get("deleted") is True:
            await self.index.deleted(owner.tenant_id, completion_id)
            return
        await self.index.drain(owner.tenant_id)  # an update right after the create finds its row
        row = await self.index.get(owner.tenant_id, completion_id)
        if row is None:
            return
        state = dict(row.state or {})
        if isinstance(answer.get("metadata"), dict):
            state["metadata"] = answer["metadata"]
        await self.index.seen(owner.tenant_id, completion_id, snapshot=answer, state=state)

    async def _conversation_created(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        await self._claim(exchange, answer.get("id"), "conversation", await self._owner_of(exchange))

    async def _conversation_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        await self._mine(exchange, answer.get("id"))

    async def _items_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        owner = await self._owner_of(exchange)
        for item in answer.get("data") or ():
            if isinstance(item, dict) and not await self._claim(exchange, item.get("id"), "item", owner):
                return

    async def _item_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        if answer.get("object") == "conversation":  # a deleted item's answer is its conversation
            await self._mine(exchange, answer.get("id"))
        else:
            await self._claim(exchange, answer.get("id"), "item", await self._owner_of(exchange))
