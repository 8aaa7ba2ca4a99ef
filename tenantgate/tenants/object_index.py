"""The tenants' own index of what they created upstream: what lists answer from, what the poller watches, what
storage limits count.

The upstream account is shared (or, for a BYOK tenant, the tenant's own but reachable only through its record), so
an upstream list can never be passed through: it would show every tenant's objects. Lists are answered from here,
in OpenAI's cursor shape, ordered by the upstream's ``created_at`` and then id. A row is added only after the
ownership record (``objects.py``, first owner wins) made the id the tenant's, and every query names the tenant,
except the poller's, which goes through every tenant's objects in flight and carries the owner with each.

Kinds so far: ``file``, ``upload``, ``batch``, ``response`` (background responses, polled until done),
``chat_completion`` (stored chat completions: what ``GET /v1/chat/completions`` lists), ``vector_store``
(``bytes`` is its ``usage_bytes``).

A stored chat completion is made on the chat path, which must not wait for a database write: its row is added by a
task (``add_later``), and a page of a tenant's rows first waits for that tenant's rows still being added here, so a
list right after a create shows it (on the same process; another replica sees it once the insert landed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.file_room import HOLD as FILE_HOLD
from tenantgate.tenants.models import TenantObject, utcnow

log = logging.getLogger("tenantgate.objects")

Order = Literal["asc", "desc"]
T = TenantObject
_SCAN = 200
"""Rows read at a time when a page is filtered in Python (``match``)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A new row: the owner (tenant, creating key, upstream and account) and what lists and limits read."""

    id: str
    tenant_id: str
    kind: str
    upstream: str
    account: str
    created: int
    api_key_id: str | None = None
    status: str | None = None
    purpose: str | None = None
    bytes: int | None = None
    snapshot: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    poll_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[TenantObject]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Storage:
    files: int
    bytes: int


class ObjectIndex:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._adding: dict[str, set[asyncio.Task[None]]] = {}

    def add_later(self, entry: Entry) -> None:
        """Add a row without waiting for it (the chat path); pages of its tenant wait for it."""
        task = asyncio.create_task(self._add_logged(entry))
        tasks = self._adding.setdefault(entry.tenant_id, set())
        tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            tasks.discard(finished)
            if not tasks and self._adding.get(entry.tenant_id) is tasks:
                del self._adding[entry.tenant_id]

        task.add_done_callback(done)

    async def _add_logged(self, entry: Entry) -> None:
        try:
            await self.add(entry)
        except Exception as exc:
            log.error("objects: could not index %s %s (%s)", entry.kind, entry.id, type(exc).__name__)

    async def drain(self, tenant_id: str | None = None) -> None:
        """Wait for the rows still being added (of one tenant, or all: at shutdown)."""
        groups = [self._adding.get(tenant_id, set())] if tenant_id is not None else list(self._adding.values())
        pending = [task for group in groups for task in group]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def add(self, entry: Entry, replacing: str | None = None) -> bool:
        """Add a row; False if the id has one already (the first stays: ownership was decided before this, and two
        processes may add the same batch output file at once). ``replacing`` is the tenant's file hold the row takes
        the place of (file_room.py), deleted in the same transaction."""
        values = {
            "id": entry.id,
            "tenant_id": entry.tenant_id,
            "kind": entry.kind,
            "api_key_id": entry.api_key_id,
            "upstream": entry.upstream,
            "account": entry.account,
            "created": entry.created,
            "status": entry.status,
            "purpose": entry.purpose,
            "bytes": entry.bytes,
            "snapshot": entry.snapshot,
            "state": entry.state,
            "poll_at": entry.poll_at,
            "updated_at": utcnow(),
        }
        async with self._sessions() as session, session.begin():
            insert = pg_insert(T) if session.get_bind().dialect.name == "postgresql" else sqlite_insert(T)
            result = await session.execute(insert.values(**values).on_conflict_do_nothing(index_elements=[T.id]))
            if replacing is not None:
                await session.execute(
                    delete(T).where(T.tenant_id == entry.tenant_id, T.id == replacing, T.kind == FILE_HOLD)
                )
        return bool(getattr(result, "rowcount", 0))

    async def get(self, tenant_id: str, object_id: str) -> TenantObject | None:
        async with self._sessions() as session:
            row = await session.get(T, object_id)
        return row if row is not None and row.tenant_id == tenant_id else None

    async def seen(
        self,
        tenant_id: str,
        object_id: str,
        *,
        status: str | None = None,
        snapshot: dict[str, Any] | None = None,
        poll_at: datetime | Literal["keep"] | None = "keep",
        state: dict[str, Any] | None = None,
        bytes: int | None = None,
    ) -> None:
        """What the upstream answered about the object last (its status, size and the object itself)."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if status is not None:
            values["status"] = status
        if bytes is not None:
            values["bytes"] = bytes
        if snapshot is not None:
            values["snapshot"] = snapshot
        if state is not None:
            values["state"] = state
        if poll_at != "keep":
            values["poll_at"] = poll_at
        async with self._sessions() as session, session.begin():
            await session.execute(update(T).where(T.id == object_id, T.tenant_id == tenant_id).values(**values))

    async def deleted(self, tenant_id: str, object_id: str) -> None:
        """Gone upstream: out of lists and storage (the id stays the tenant's)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(T)
                .where(T.id == object_id, T.tenant_id == tenant_id, T.deleted_at.is_(None))
                .values(deleted_at=utcnow(), poll_at=None, updated_at=utcnow())
            )

    async def page(
        self,
        tenant_id: str,
        kind: str,
        *,
        limit: int,
        after: str | None = None,
        order: Order = "desc",
        purpose: str | None = None,
        match: Callable[[TenantObject], bool] | None = None,
    ) -> Page:
        """One page of the tenant's live objects of ``kind``; ``after`` is the last id of the previous page (an id
        that is not the tenant's, or not of this kind, gives an empty page, as an unknown one does). ``match``
        keeps only the rows it accepts (filters on what the gateway keeps in ``state``)."""
        await self.drain(tenant_id)
        conditions = [T.tenant_id == tenant_id, T.kind == kind, T.deleted_at.is_(None)]
        if purpose is not None:
            conditions.append(T.purpose == purpose)
        async with self._sessions() as session:
            if after is not None:
                anchor = await session.get(T, after)
                if anchor is None or anchor.tenant_id != tenant_id or anchor.kind != kind:
                    return Page([], False)
                if order == "desc":
                    conditions.append(or_(T.created < anchor.created, and_(T.created == anchor.created, T.id < after)))
                else:
                    conditions.append(or_(T.created > anchor.created, and_(T.created == anchor.created, T.id > after)))
            ordering = (T.created.desc(), T.id.desc()) if order == "desc" else (T.created.asc(), T.id.asc())
            statement = select(T).where(*conditions).order_by(*ordering)
            if match is None:
                rows = list((await session.scalars(statement.limit(limit + 1))).all())
            else:
                rows = []
                offset = 0
                while len(rows) <= limit:
                    chunk = list((await session.scalars(statement.offset(offset).limit(_SCAN))).all())
                    rows.extend(row for row in chunk if match(row))
                    offset += _SCAN
                    if len(chunk) < _SCAN:
                        break
        return Page(rows[:limit], len(rows) > limit)

    async def storage(self, tenant_id: str, kind: str = "file") -> Storage:
        """The tenant's live files (or vector stores): how many and their bytes."""
        async with self._sessions() as session:
            count, total = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(T.bytes), 0)).where(
                        T.tenant_id == tenant_id, T.kind == kind, T.deleted_at.is_(None)
                    )
                )
            ).one()
        return Storage(int(count or 0), int(total or 0))

    async def in_flight(self, tenant_id: str, kind: str) -> list[TenantObject]:
        """The tenant's objects of ``kind`` still watched (not settled)."""
        async with self._sessions() as session:
            statement = select(T).where(T.tenant_id == tenant_id, T.kind == kind, T.settled_at.is_(None))
            return list((await session.scalars(statement)).all())

    async def held(self, tenant_id: str, counter_key: str) -> int:
        """What the tenant's batches and background responses in flight hold on one limit counter (written beside
        each at create)."""
        total = 0
        async with self._sessions() as session:
            statement = select(T).where(
                T.tenant_id == tenant_id, T.kind.in_(("batch", "response")), T.settled_at.is_(None)
            )
            rows = list((await session.scalars(statement)).all())
        for row in rows:
            for hold in (row.state or {}).get("holds") or ():
                if isinstance(hold, dict) and hold.get("key") == counter_key and isinstance(hold.get("amount"), int):
                    total += hold["amount"]
        return total

    async def due(self, now: datetime, limit: int) -> list[TenantObject]:
        """Every tenant's objects the poller should look at now, longest waiting first (the poller's query)."""
        async with self._sessions() as session:
            statement = select(T).where(T.poll_at <= now).order_by(T.poll_at).limit(limit)
            return list((await session.scalars(statement)).all())

    async def postpone(self, object_id: str, seconds: float) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(T).where(T.id == object_id).values(poll_at=utcnow() + timedelta(seconds=seconds))
            )

    async def claim_settlement(self, tenant_id: str, object_id: str) -> bool:
        """Mark the object settled; True for exactly one caller across every process (the one that settles)."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(T)
                .where(T.id == object_id, T.tenant_id == tenant_id, T.settled_at.is_(None))
                .values(settled_at=utcnow(), poll_at=None, updated_at=utcnow())
            )
        return bool(getattr(result, "rowcount", 0))
