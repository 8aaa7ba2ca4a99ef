"""Which tenant created each object stored upstream (Responses API responses, for now).

All tenants share the platform's upstream account, so an id like ``resp_...`` is reachable by anyone who knows it.
The gateway records the owner of every id it sees created and answers 404 to everyone else.

Recording is off the hot path's database: the owner goes into an in-process map at once (and Redis, when
configured, so other replicas see it immediately), and into the database in batches. Lookups try the same
order: memory, Redis, database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.resp import RespClient
from tenantgate.tenants.models import UpstreamObject, utcnow

log = logging.getLogger("tenantgate.objects")

_REDIS_TTL_SECONDS = 30 * 24 * 3600
_MEMORY_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: str
    upstream: str


class ObjectOwnership:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: RespClient | None,
        redis_prefix: str,
        flush_interval: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._prefix = f"{redis_prefix}:obj:"
        self._memory: OrderedDict[str, Owner] = OrderedDict()
        self._pending: dict[str, tuple[str, Owner]] = {}
        self._flush_interval = flush_interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def record(self, object_id: str, kind: str, owner: Owner) -> None:
        self._remember(object_id, owner)
        self._pending[object_id] = (kind, owner)
        if self._redis is not None:
            try:
                await self._redis.execute(
                    "SET", self._prefix + object_id, f"{owner.tenant_id} {owner.upstream}", "EX", _REDIS_TTL_SECONDS
                )
            except Exception as exc:  # the batch write to the database still records it
                log.warning("could not record object owner in redis: %s", type(exc).__name__)

    async def owner(self, object_id: str) -> Owner | None:
        owner = self._memory.get(object_id)
        if owner is not None:
            return owner
        if self._redis is not None:
            try:
                value = await self._redis.execute("GET", self._prefix + object_id)
            except Exception as exc:
                log.warning("could not read object owner from redis: %s", type(exc).__name__)
                value = None
            if value:
                text = value.decode() if isinstance(value, bytes) else str(value)
                tenant_id, _, upstream = text.partition(" ")
                owner = Owner(tenant_id, upstream)
        if owner is None:
            async with self._sessions() as session:
                row = await session.get(UpstreamObject, object_id)
            if row is not None:
                owner = Owner(row.tenant_id, row.upstream)
        if owner is not None:
            self._remember(object_id, owner)
        return owner

    def _remember(self, object_id: str, owner: Owner) -> None:
        self._memory[object_id] = owner
        self._memory.move_to_end(object_id)
        if len(self._memory) > _MEMORY_ENTRIES:
            self._memory.popitem(last=False)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            async with self._sessions() as session, session.begin():
                existing = set(
                    (await session.execute(select(UpstreamObject.id).where(UpstreamObject.id.in_(batch)))).scalars()
                )
                session.add_all(
                    UpstreamObject(
                        id=object_id, kind=kind, tenant_id=owner.tenant_id, upstream=owner.upstream, created_at=utcnow()
                    )
                    for object_id, (kind, owner) in batch.items()
                    if object_id not in existing
                )
        except Exception as exc:
            log.warning("could not write object owners (%d), will retry: %s", len(batch), type(exc).__name__)
            self._pending = {**batch, **self._pending}

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()
