"""What the upstream's answers about files, uploads and batches mean for the tenant that gets them (an ExchangeHook).

Before the caller sees an answer (``settle`` runs before its first byte), every id in it becomes the caller's or the
answer is withheld: a created file, upload, upload part or batch, a completed upload's file, a batch's output and
error files are recorded first-owner-wins (``tenants/objects.py``) with the creating key; an answer naming an id
someone else owns (an upstream that lies, or a collision) is replaced by ``502 upstream_object_conflict``, as for
responses. A batch's ``input_file_id`` must be the caller's already. Then the tenant's index learns what lists and
the poller read: new rows, statuses, deletions; a batch seen ended is handed to the settlement (billing).

Index rows of new objects are written before the answer goes out (one small insert per create of a file, an upload
or a batch, or a background response: none of them on the chat or embeddings path), so a list right after a create
shows it, and a batch is watched and billed even if this process dies a moment later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import ServiceUnavailable
from tenantgate.platform.proxy.conversation_answers import ConversationAnswers
from tenantgate.platform.proxy.stored import OwnershipConflict, OwnershipHook
from tenantgate.platform.proxy.vector_store_answers import VectorStoreAnswers
from tenantgate.tenants.models import utcnow
from tenantgate.tenants.object_index import Entry, ObjectIndex
from tenantgate.tenants.objects import Account, ObjectOwnership, Owner
from tenantgate.tenants.vector_store_usage import VectorStoreUsageLog

log = logging.getLogger("tenantgate.objects")

BATCH_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
_MAX_TEXT = 64


def owner_of(exchange: Exchange, parent: Owner | None = None) -> Owner:
    """The owner of what this exchange created: the caller's tenant and key, in the account of the object it worked
    on (``parent``: a part is its upload's, a batch its input file's), or else at the upstream and account it was
    sent to."""
    principal = exchange.ctx.principal
    if parent is not None:
        return Owner(parent.tenant_id, parent.upstream, parent.account, principal.key_id)
    account: Account = "tenant" if exchange.upstream_name in principal.upstream_keys else "platform"
    return Owner(principal.tenant_id, exchange.upstream_name, account, principal.key_id)


def _text(value: Any) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def file_entry(owner: Owner, answer: dict[str, Any]) -> Entry | None:
    """The index row of a file object (as the upstream describes it), or None if it is not one."""
    file_id = answer.get("id")
    if not isinstance(file_id, str):
        return None
    return Entry(
        id=file_id,
        tenant_id=owner.tenant_id,
        kind="file",
        upstream=owner.upstream,
        account=owner.account,
        api_key_id=owner.api_key_id,
        created=_int(answer.get("created_at")) or int(time.time()),
        status=_text(answer.get("status")),
        purpose=_text(answer.get("purpose")),
        bytes=_int(answer.get("bytes")) or 0,
        snapshot=answer,
    )


BatchSeen = Callable[[Owner, dict[str, Any]], Awaitable[None]]


class ObjectAnswersHook:
    """Ownership of everything an answer names: responses and their items (``stored.OwnershipHook``, which this hook
    runs first), files, uploads and batches; stored chat completions and conversations (``conversation_answers.py``).
    One hook, so the chat path pays for one."""

    name = "objects"

    def __init__(
        self,
        ownership: ObjectOwnership,
        index: ObjectIndex,
        *,
        poll_seconds: float,
        batch_seen: BatchSeen | None = None,
        vector_store_usage: VectorStoreUsageLog | None = None,
        vector_store_seconds: float = 900.0,
    ) -> None:
        self.responses = OwnershipHook(ownership)
        self.ownership = ownership
        self.index = index
        self.poll_seconds = poll_seconds
        self.batch_seen = batch_seen
        """Called (without waiting for it) with every batch the caller is shown that has ended: its settlement."""
        self._handlers: dict[str, Callable[[Exchange, dict[str, Any]], Awaitable[None]]] = {
            "/v1/files": self._file_created,
            "/v1/uploads": self._upload_created,
            "/v1/uploads/{upload_id}/parts": self._part_added,
            "/v1/uploads/{upload_id}/complete": self._upload_completed,
            "/v1/uploads/{upload_id}/cancel": self._upload_cancelled,
            "/v1/files/{file_id}": self._file_shown,
            "/v1/batches": self._batch_created,
            "/v1/batches/{batch_id}": self._batch_shown,
            "/v1/batches/{batch_id}/cancel": self._batch_shown,
        }
        self.conversations = ConversationAnswers(
            ownership, index, claim=self._claim, owner_of=self._owner, withhold=_withhold
        )
        self._handlers.update(self.conversations.handlers)
        stores = VectorStoreAnswers(
            ownership,
            index,
            owner=self._owner,
            add=self._add,
            usage=vector_store_usage,
            poll_seconds=vector_store_seconds,
            soon_seconds=poll_seconds,
        )
        self._handlers.update(stores.handlers())

    async def admit(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        await self.responses.settle(exchange)
        if exchange.status >= 400 or exchange.withheld is not None:
            return
        if exchange.path == "/v1/chat/completions":
            await self.conversations.chat_completion(exchange)
        elif exchange.answer is not None:
            handler = self._handlers.get(exchange.path)
            if handler is not None:
                await handler(exchange, exchange.answer)
        elif exchange.path == "/v1/responses" and exchange.response_id and (exchange.payload or {}).get("background"):
            await self._background_response(exchange, exchange.response_id)

    def finish(self, exchange: Exchange) -> None:
        return None

    async def _owner(self, exchange: Exchange) -> Owner:
        """``owner_of``, with the owner of the object the request worked on (its route looked it up just now, so
        it is in the ownership's memory)."""
        parent = await self.ownership.owner(exchange.created_under) if exchange.created_under else None
        return owner_of(
            exchange, parent if parent is not None and parent.tenant_id == exchange.ctx.principal.tenant_id else None
        )

    async def _claim(self, exchange: Exchange, object_id: Any, kind: str, owner: Owner) -> bool:
        """Make ``object_id`` the owner's; False (and the answer withheld) if it is someone else's."""
        if not isinstance(object_id, str) or not object_id:
            return True
        if await self.ownership.record(object_id, kind, owner) is None:
            return True
        _withhold(exchange)
        return False

    async def _add(self, exchange: Exchange, entry: Entry | None, *, required: bool = False) -> bool:
        if entry is None:
            return True
        try:
            await self.index.add(entry, replacing=exchange.file_hold if entry.kind in ("file", "upload") else None)
        except Exception as exc:
            log.error("objects: could not index %s %s (%s)", entry.kind, entry.id, type(exc).__name__)
            if required:
                exchange.error_type = "object_index_unavailable"
                exchange.withheld = ServiceUnavailable(
                    f"The gateway could not record this {entry.kind}; try again. (request id {exchange.ctx.request_id})"
                )
            return False
        return True

    async def _file_created(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        owner = await self._owner(exchange)
        if await self._claim(exchange, answer.get("id"), "file", owner):
            await self._add(exchange, file_entry(owner, answer))

    async def _upload_created(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        owner = await self._owner(exchange)
        upload_id = answer.get("id")
        if not await self._claim(exchange, upload_id, "upload", owner) or not isinstance(upload_id, str):
            return
        entry = Entry(
            id=upload_id,
            tenant_id=owner.tenant_id,
            kind="upload",
            upstream=owner.upstream,
            account=owner.account,
            api_key_id=owner.api_key_id,
            created=_int(answer.get("created_at")) or int(time.time()),
            status=_text(answer.get("status")),
            purpose=_text(answer.get("purpose")),
            bytes=_int(answer.get("bytes")),
            snapshot=answer,
        )
        # Required: while open, the upload counts against the tenant's file limits from this row (file_room.py).
        await self._add(exchange, entry, required=True)

    async def _part_added(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        await self._claim(exchange, answer.get("id"), "upload_part", await self._owner(exchange))

    async def _upload_completed(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        owner = await self._owner(exchange)
        file = answer.get("file")
        if isinstance(file, dict):
            if not await self._claim(exchange, file.get("id"), "file", owner):
                return
            await self._add(exchange, file_entry(owner, file))
        await self._upload_cancelled(exchange, answer)

    async def _upload_cancelled(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        upload_id = answer.get("id")
        if isinstance(upload_id, str):
            tenant_id = exchange.ctx.principal.tenant_id
            await self.index.seen(tenant_id, upload_id, status=_text(answer.get("status")), snapshot=answer)

    async def _file_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        """A file retrieved or deleted: it must be the caller's; deleted, it leaves lists and storage."""
        file_id = answer.get("id")
        if not isinstance(file_id, str):
            return
        tenant_id = exchange.ctx.principal.tenant_id
        known = await self.ownership.owner(file_id)
        if known is None or known.tenant_id != tenant_id:
            _withhold(exchange)
        elif answer.get("deleted") is True:
            await self.index.deleted(tenant_id, file_id)

    async def _batch_files(self, exchange: Exchange, answer: dict[str, Any], owner: Owner) -> bool:
        """A batch answer's files: its input must be the caller's, its outputs become the batch owner's."""
        input_file = answer.get("input_file_id")
        if isinstance(input_file, str):
            known = await self.ownership.owner(input_file)
            if known is None or known.tenant_id != owner.tenant_id:
                self.ownership.conflicts += 1
                _withhold(exchange)
                return False
        return all(
            [
                await self._claim(exchange, answer.get(name), "file", owner)
                for name in ("output_file_id", "error_file_id")
            ]
        )

    async def _batch_created(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        owner = await self._owner(exchange)
        batch_id = answer.get("id")
        if not await self._claim(exchange, batch_id, "batch", owner) or not isinstance(batch_id, str):
            return
        if not await self._batch_files(exchange, answer, owner):
            return
        admission = exchange.batch
        entry = Entry(
            id=batch_id,
            tenant_id=owner.tenant_id,
            kind="batch",
            upstream=owner.upstream,
            account=owner.account,
            api_key_id=owner.api_key_id,
            created=_int(answer.get("created_at")) or int(time.time()),
            status=_text(answer.get("status")),
            snapshot=answer,
            state={
                "endpoint": admission.endpoint if admission is not None else answer.get("endpoint"),
                "holds": admission.holds if admission is not None else [],
                "stored_chat": admission.stored_chat if admission is not None else [],
                # Billed from if its output can never be read (platform/background/settlement.py).
                "estimate": {
                    model: [admission.queue_tokens.get(model, 0), worst]
                    for model, worst in admission.worst_tokens.items()
                }
                if admission is not None
                else {},
            },
            poll_at=utcnow() + timedelta(seconds=self.poll_seconds),
        )
        if await self._add(exchange, entry, required=True) and admission is not None:
            admission.kept = True

    async def _batch_shown(self, exchange: Exchange, answer: dict[str, Any]) -> None:
        batch_id = answer.get("id")
        if not isinstance(batch_id, str):
            return
        owner = await self.ownership.owner(batch_id)
        if owner is None or owner.tenant_id != exchange.ctx.principal.tenant_id:
            _withhold(exchange)  # the upstream answered about a batch other than the one asked for
            return
        if not await self._batch_files(exchange, answer, owner):
            return
        status = _text(answer.get("status"))
        await self.index.seen(owner.tenant_id, batch_id, status=status, snapshot=answer)
        if status in BATCH_ENDED and self.batch_seen is not None:
            await self.batch_seen(owner, answer)

    async def _background_response(self, exchange: Exchange, response_id: str) -> None:
        """A background response is watched by the poller until it is done, so it is billed if never retrieved; what
        it holds against the month's quota and budget stays held until then."""
        owner = await self._owner(exchange)
        entry = Entry(
            id=response_id,
            tenant_id=owner.tenant_id,
            kind="response",
            upstream=owner.upstream,
            account=owner.account,
            api_key_id=owner.api_key_id,
            created=int(exchange.started_at),
            status=exchange.finish_reasons[0][:_MAX_TEXT] if exchange.finish_reasons else None,
            # What it holds against the month until it completes (released by its settlement).
            state={"model": exchange.model, "holds": exchange.background_holds or [], **_worst_state(exchange)},
            poll_at=utcnow() + timedelta(seconds=self.poll_seconds),
        )
        if await self._add(exchange, entry):
            exchange.background_holds_kept = True


def _worst_state(exchange: Exchange) -> dict[str, list[int]]:
    """The worst case admission held, kept beside the response: what it is billed from if it is gone upstream
    before it was settled (platform/background/settlement.py)."""
    worst = exchange.background_worst
    return {} if worst is None else {"worst": [worst.input_tokens, worst.output_tokens]}


def _withhold(exchange: Exchange) -> None:
    exchange.error_type = OwnershipConflict.code
    exchange.withheld = OwnershipConflict(
        "The upstream answered with an object id that is not this tenant's; the answer was withheld. "
        f"(request id {exchange.ctx.request_id})"
    )
