"""Room for a tenant's files under its count and storage limits, taken before an upload reaches the upstream.

What counts against the limits is one total, read in one statement of the index (``tenant_objects``): the stored
files, the uploads still open (an Uploads API upload is one file of its declared ``bytes`` from its create until it
is completed, cancelled or an hour old, OpenAI's upload lifetime), and the *holds*: rows of kind ``file_hold`` that
an upload in flight takes before it is forwarded (a direct ``POST /v1/files``, an upload's create and its complete).

Taking a hold is check-and-insert under a per-tenant lock held to the end of its transaction (a Postgres advisory
lock, so every process agrees; SQLite serves one process, so a lock of this process is enough), so two uploads can
never both take the last room. The row that replaces a hold (the file, the open upload) is added in the transaction
that deletes the hold (``ObjectIndex.add(replacing=...)``), so a reader counts the upload once, never twice (two
uploads that fill the room exactly were refused for that moment) nor zero times; an upload that made nothing has its
hold released when it ends. A hold a process could not release (killed mid-upload) stops counting after
``hold_seconds``; the next hold of its tenant deletes it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.models import TenantObject

T = TenantObject
HOLD = "file_hold"
UPLOAD_SECONDS = 3600
"""An upload not completed within an hour expires (OpenAI's Uploads API); it stops counting then."""
_HOLD_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class FileLimits:
    count: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Used:
    """What counts against the limits: stored files, open uploads and holds (each one file)."""

    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    tenant_id: str
    bytes: int
    """The most bytes the upload may bring (its file is cut off beyond them)."""


class FileRoom:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hold_seconds: float = _HOLD_SECONDS) -> None:
        self._sessions = sessions
        self._hold_seconds = hold_seconds
        self._local = asyncio.Lock()  # SQLite: one process, one writer

    async def hold(
        self, tenant_id: str, limits: FileLimits, *, least: int, most: int, excluding: str | None = None
    ) -> tuple[Hold | None, Used]:
        """One more file of at least ``least`` and at most ``most`` bytes: a hold of as many bytes as there is room
        for (up to ``most``), or None when the count is reached or less than ``least`` bytes are left. ``excluding``
        names an open upload the hold replaces (its complete), so it is not counted twice. Sizes come from callers
        (a Content-Length, an upload's ``bytes``): a negative one counts as 0, so no hold can give room away."""
        least = max(0, least)
        most = max(least, most)
        async with self._sessions() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                key = f"tenantgate.file_room:{tenant_id}"
                await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
                return await self._take(session, tenant_id, limits, least, most, excluding)
            async with self._local:
                return await self._take(session, tenant_id, limits, least, most, excluding)

    async def _take(
        self, session: AsyncSession, tenant_id: str, limits: FileLimits, least: int, most: int, excluding: str | None
    ) -> tuple[Hold | None, Used]:
        now = int(time.time())
        await session.execute(
            delete(T).where(T.tenant_id == tenant_id, T.kind == HOLD, T.created < now - self._hold_seconds)
        )
        used = await self._used(session, tenant_id, now, excluding)
        room = limits.bytes - used.bytes
        if used.files >= limits.count or room < least:
            return None, used
        hold = Hold(f"hold_{secrets.token_hex(12)}", tenant_id, min(most, room))
        session.add(
            T(
                id=hold.id,
                tenant_id=tenant_id,
                kind=HOLD,
                upstream="",
                account="",
                created=now,
                status="pending",
                bytes=hold.bytes,
            )
        )
        return hold, used

    async def release(self, hold: Hold) -> None:
        """The upload is over: its file (or open upload) is in the index by now, or it never came to be."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(T).where(T.tenant_id == hold.tenant_id, T.id == hold.id))

    async def used(self, tenant_id: str) -> Used:
        async with self._sessions() as session:
            return await self._used(session, tenant_id, int(time.time()), None)

    async def _used(self, session: AsyncSession, tenant_id: str, now: int, excluding: str | None) -> Used:
        counted = or_(
            T.kind == "file",
            and_(T.kind == "upload", T.status == "pending", T.created >= now - UPLOAD_SECONDS),
            and_(T.kind == HOLD, T.created >= now - self._hold_seconds),
        )
        where = [T.tenant_id == tenant_id, T.deleted_at.is_(None), counted]
        if excluding is not None:
            where.append(T.id != excluding)
        files, total = (
            await session.execute(select(func.count(), func.coalesce(func.sum(T.bytes), 0)).where(*where))
        ).one()
        return Used(int(files or 0), int(total or 0))
