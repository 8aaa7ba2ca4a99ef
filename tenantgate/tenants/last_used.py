"""``api_keys.last_used_at`` maintained off the request path.

The auth middleware records each successful use in a dict (one assignment, no I/O); a background task writes the
latest time of every used key in one batched UPDATE every few seconds, and once more at shutdown. A failed flush
keeps its entries for the next one. Several processes may flush the same key; the newest time wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.models import ApiKey, UTCDateTime

log = logging.getLogger("tenantgate.last_used")

_used_at = bindparam("b_at", type_=UTCDateTime())
_UPDATE = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("b_id"), or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < _used_at))
    .values(last_used_at=_used_at)
)


class LastUsedTracker:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, interval_seconds: float) -> None:
        self._sessions = sessions
        self._interval = interval_seconds
        self._pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0

    def touch(self, key_id: str) -> None:
        """Hot path: O(1), no I/O."""
        self._pending[key_id] = time.time()

    async def flush(self) -> int:
        """Write what was recorded since the last flush; returns the number of keys written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        rows = [{"b_id": key_id, "b_at": datetime.fromtimestamp(at, UTC)} for key_id, at in batch.items()]
        try:
            async with self._sessions() as session, session.begin():
                connection = await session.connection()
                await connection.execute(_UPDATE, rows)
        except Exception as exc:
            log.warning("could not record key last use for %d keys (%s); retrying", len(rows), type(exc).__name__)
            for key_id, at in batch.items():
                if self._pending.get(key_id, 0.0) < at:
                    self._pending[key_id] = at
            return 0
        self.flushes += 1
        return len(rows)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tenantgate-last-used")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
