"""Cache invalidation through the database, for server processes that share no Redis (one node, several workers).

Every admin mutation appends its invalidations to ``invalidation_log`` in its own transaction (``append``, called
by whoever commits an Operation: the admin API, the CLI, ``apply``), so a change that committed always has its
entries, and one that rolled back has none. A server process without Redis reads the entries it has not seen yet
every half second (``InvalidationLog.read``: one query on the primary key, never per request) and applies them to
its key cache, so a revocation reaches every worker within a second, as it does through Redis pub/sub.

Ids are handed out when a row is inserted, not when its transaction commits: on Postgres an entry may become
visible after one with a higher id. A reader therefore keeps waiting, for ``GAP_SECONDS``, for the ids it skipped
over. (On SQLite one transaction writes at a time, so ids appear in order.) The writers delete entries older
than ``RETENTION``: by then every key cached before the change has expired anyway (the cache TTL is seconds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.invalidation import Invalidation, known
from tenantgate.tenants.models import InvalidationEntry, utcnow

RETENTION = timedelta(hours=1)
GAP_SECONDS = 10.0
_MAX_GAP = 1000  # a larger jump (a Postgres sequence reset, say) is not waited for id by id
_BATCH = 1000
# A process starting this many entries back also waits for the ids among them that are still committing.
_LOOKBACK = 100


async def append(session: AsyncSession, invalidations: Sequence[Invalidation]) -> None:
    """Record ``invalidations`` in the session's transaction (last, so its ids are taken just before the commit),
    and delete entries past ``RETENTION``."""
    if not invalidations:
        return
    await session.execute(delete(InvalidationEntry).where(InvalidationEntry.created_at < utcnow() - RETENTION))
    session.add_all(InvalidationEntry(scope=item.scope, target_id=item.id) for item in invalidations)
    await session.flush()


class InvalidationLog:
    """One process's reading position in the log."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, gap_seconds: float = GAP_SECONDS) -> None:
        self._sessions = sessions
        self._gap_seconds = gap_seconds
        self._last: int | None = None
        self._awaited: dict[int, float] = {}  # ids skipped over -> until when (monotonic) they are waited for

    async def read(self) -> list[Invalidation]:
        """The entries committed since the last read (the first read only sets the position)."""
        async with self._sessions() as session:
            if self._last is None:
                newest = await session.scalar(select(func.max(InvalidationEntry.id)))
                self._last = max((newest or 0) - _LOOKBACK, 0)
                await self._read(session)
                return []  # nothing is cached yet: what was committed before this process started does not matter
            return await self._read(session)

    async def _read(self, session: AsyncSession) -> list[Invalidation]:
        assert self._last is not None
        now = time.monotonic()
        self._awaited = {id_: until for id_, until in self._awaited.items() if until > now}
        newer = InvalidationEntry.id > self._last
        where = or_(newer, InvalidationEntry.id.in_(self._awaited)) if self._awaited else newer
        rows = (
            await session.execute(
                select(InvalidationEntry.id, InvalidationEntry.scope, InvalidationEntry.target_id)
                .where(where)
                .order_by(InvalidationEntry.id)
                .limit(_BATCH)
            )
        ).all()
        found: list[Invalidation] = []
        for id_, scope, target_id in rows:
            if id_ > self._last:
                if id_ - self._last <= _MAX_GAP:
                    self._awaited.update(dict.fromkeys(range(self._last + 1, id_), now + self._gap_seconds))
                self._last = id_
            self._awaited.pop(id_, None)
            if (invalidation := known(scope, target_id)) is not None:
                found.append(invalidation)
        return found
