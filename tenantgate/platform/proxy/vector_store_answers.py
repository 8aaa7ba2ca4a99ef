"""What the upstream's answers about vector stores mean for the tenant that gets them (run by ObjectAnswersHook).

A created store or file batch is recorded as the caller's (first owner wins) before the caller sees its id, and a
store joins the tenant's index (what ``GET /v1/vector_stores`` lists and what storage is counted from, with its
``usage_bytes``). Every other answer may only name the caller's objects: the store itself, its ``vector_store_id``,
each file (``id`` of a store file, ``file_id`` of a search result) and file batch, in a single object or in every
item of a list; an answer naming anything else is withheld (``502 upstream_object_conflict``), as for files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tenantgate.core.exchange import Exchange
from tenantgate.platform.proxy.stored import OwnershipConflict
from tenantgate.tenants.models import utcnow
from tenantgate.tenants.object_index import Entry, ObjectIndex
from tenantgate.tenants.objects import ObjectOwnership, Owner
from tenantgate.tenants.vector_store_usage import VectorStoreUsageLog

log = logging.getLogger("tenantgate.objects")

Handler = Callable[[Exchange, dict[str, Any]], Awaitable[None]]
_OWN_ID = frozenset(
    {
        "vector_store",
        "vector_store.deleted",
        "vector_store.file",
        "vector_store.file.deleted",
        "vector_store.files_batch",
    }
)
"""Objects whose ``id`` is an owned object's (the store, a store file, a file batch)."""
_CHANGES_FILES = frozenset({"vector_store.file", "vector_store.file.deleted", "vector_store.files_batch"})
_MAX_TEXT = 64


def usage_bytes(answer: dict[str, Any]) -> int | None:
    value = answer.get("usage_bytes")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class VectorStoreAnswers:
    def __init__(
        self,
        ownership: ObjectOwnership,
        index: ObjectIndex,
        *,
        owner: Callable[[Exchange], Awaitable[Owner]],
        add: Callable[[Exchange, Entry], Awaitable[bool]],
        usage: VectorStoreUsageLog | None = None,
        poll_seconds: float = 900.0,
        soon_seconds: float = 30.0,
    ) -> None:
        self.ownership = ownership
        self.index = index
        self.usage = usage
        self.poll_seconds = poll_seconds
        self.soon_seconds = soon_seconds
        """A store whose files changed is looked at again this soon (its bytes change once they are indexed)."""
        self._owner = owner
        self._add = add

    def handlers(self) -> dict[str, Handler]:
        store = "/v1/vector_stores/{vector_store_id}"
        shown: dict[str, Handler] = {
            template: self._shown
            for template in (
                f"{store}/search",
                f"{store}/files",
                f"{store}/files/{{file_id}}",
                f"{store}/file_batches/{{batch_id}}",
                f"{store}/file_batches/{{batch_id}}/cancel",
                f"{store}/file_batches/{{batch_id}}/files",
            )
        }
        return {
            **shown,
            "/v1/vector_stores": self._store_created,
            store: self._store_shown,
            f"{store}/file_batches": self._batch_created,
        }

    async def _store_created(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        owner = await self._owner(exchange)
        store_id = answer.get("id")
        if not isinstance(store_id, str) or not store_id:
            return
        if await self.ownership.record(store_id, "vector_store", owner) is not None:
            withhold(exchange)
            return
        created = answer.get("created_at")
        entry = Entry(
            id=store_id,
            tenant_id=owner.tenant_id,
            kind="vector_store",
            upstream=owner.upstream,
            account=owner.account,
            api_key_id=owner.api_key_id,
            created=created if isinstance(created, int) and created > 0 else int(time.time()),
            status=_text(answer.get("status")),
            bytes=usage_bytes(answer) or 0,
            snapshot=answer,
            poll_at=utcnow() + timedelta(seconds=self.poll_seconds),
        )
        if await self._add(exchange, entry):
            await self._record_usage(owner.tenant_id, store_id, answer)

    async def _store_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        """A store retrieved, modified or deleted: it must be the caller's; the index learns its bytes or its end."""
        if not await self._all_owned(exchange, answer):
            return
        store_id = answer.get("id")
        if not isinstance(store_id, str):
            return
        tenant_id = exchange.ctx.principal.tenant_id
        if answer.get("deleted") is True:
            await self.index.deleted(tenant_id, store_id)
        else:
            await self.index.seen(
                tenant_id, store_id, status=_text(answer.get("status")), snapshot=answer, bytes=usage_bytes(answer)
            )
            await self._record_usage(tenant_id, store_id, answer)

    async def _record_usage(self, tenant_id: str, store_id: str, answer: dict[str, Any]) -> None:
        size = usage_bytes(answer)
        if self.usage is None or size is None:
            return
        try:
            await self.usage.record(tenant_id, store_id, size, time.time())
        except Exception as exc:  # the poller records it again later; the caller's answer is not held up for it
            log.warning("objects: could not record vector store usage (%s)", type(exc).__name__)

    async def _batch_created(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        batch_id = answer.get("id")
        if isinstance(batch_id, str) and batch_id:
            owner = await self._owner(exchange)
            if await self.ownership.record(batch_id, "vector_store_file_batch", owner) is not None:
                withhold(exchange)
                return
        if await self._all_owned(exchange, answer):
            await self._look_again_soon(exchange)

    async def _shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        if await self._all_owned(exchange, answer) and answer.get("object") in _CHANGES_FILES:
            await self._look_again_soon(exchange)

    async def _look_again_soon(self, exchange: Exchange) -> None:
        """The store's files changed (or are being looked at while they do): the poller refreshes the store's
        snapshot and bytes soon, so lists, /v1/me and the Usage API follow without anyone retrieving it."""
        if exchange.created_under:
            soon = utcnow() + timedelta(seconds=self.soon_seconds)
            await self.index.seen(exchange.ctx.principal.tenant_id, exchange.created_under, poll_at=soon)

    async def _all_owned(self, exchange: Exchange, answer: dict[str, Any]) -> bool:
        """Whether every id the answer names is the caller's; if not, the answer is withheld."""
        tenant_id = exchange.ctx.principal.tenant_id
        for object_id in named_ids(answer):
            owner = await self.ownership.owner(object_id)
            if owner is None or owner.tenant_id != tenant_id:
                self.ownership.conflicts += 1
                withhold(exchange)
                return False
        return True


def named_ids(answer: dict[str, Any]) -> list[str]:
    """The ids of stored objects a vector store answer names (an object, or each item of a list or search page)."""
    data = answer.get("data")
    items: list[Any] = data if isinstance(data, list) else [answer]
    found: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("object") in _OWN_ID and isinstance(item.get("id"), str):
            found.append(item["id"])
        for name in ("vector_store_id", "file_id"):
            if isinstance(item.get(name), str):
                found.append(item[name])
    return found


def _text(value: Any) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None


def withhold(exchange: Exchange) -> None:
    exchange.error_type = OwnershipConflict.code
    exchange.withheld = OwnershipConflict(
        "The upstream answered with an object id that is not this tenant's; the answer was withheld. "
        f"(request id {exchange.ctx.request_id})"
    )
