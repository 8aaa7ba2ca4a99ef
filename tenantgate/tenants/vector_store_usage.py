"""The storage of the tenants' vector stores over time, as the Usage API's ``vector_stores`` family reports it.

OpenAI bills vector stores by the bytes they hold per day, so their usage is a level, not a sum of requests: the
gateway keeps, per store and UTC hour, the most ``usage_bytes`` it saw the store hold that hour. It sees a store on
every answer about it (create, retrieve, modify, attaching files) and from the background poller, which looks at
every live store at least every ``vector_store_usage_seconds``. A bucket's ``usage_bytes`` is, summed over the
tenant's stores, the most each held in the hours the bucket overlaps; an hour with no observation (no gateway
running, or a store deleted before it) counts nothing. Every query names the tenant or the tenants asked for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from tenantgate.tenants.models import VectorStoreUsage as V

HOUR = 3600


class VectorStoreUsageLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(self, tenant_id: str, vector_store_id: str, usage_bytes: int, at: float) -> None:
        """The store held ``usage_bytes`` at ``at`` (Unix seconds); the hour keeps the most it saw."""
        hour = int(at) // HOUR * HOUR
        values = {"vector_store_id": vector_store_id, "hour": hour, "tenant_id": tenant_id, "usage_bytes": usage_bytes}
        async with self._sessions() as session, session.begin():
            insert = pg_insert(V) if session.get_bind().dialect.name == "postgresql" else sqlite_insert(V)
            statement = insert.values(**values)
            larger = case(
                (statement.excluded.usage_bytes > V.usage_bytes, statement.excluded.usage_bytes), else_=V.usage_bytes
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[V.vector_store_id, V.hour],
                    set_={"usage_bytes": larger},
                    where=V.tenant_id == tenant_id,  # a store id is one tenant's (ownership decided it first)
                )
            )


async def usage_buckets(
    conn: AsyncConnection, tenant_ids: Sequence[str] | None, bounds: Sequence[tuple[int, int]]
) -> list[dict[str, int]]:
    """Per bucket (``bounds``: start and end, Unix seconds), the tenants' vector store bytes, by tenant id;
    ``tenant_ids`` None: every tenant (an operator's view)."""
    if not bounds:
        return []
    first, last = bounds[0][0], bounds[-1][1]
    statement = select(V.tenant_id, V.vector_store_id, V.hour, V.usage_bytes).where(
        V.hour > first - HOUR, V.hour < last
    )
    if tenant_ids is not None:
        statement = statement.where(V.tenant_id.in_(list(tenant_ids)))
    rows = (await conn.execute(statement)).all()
    results: list[dict[str, int]] = []
    for start, end in bounds:
        most: dict[tuple[str, str], int] = {}
        for tenant_id, store_id, hour, size in rows:
            if hour < end and hour + HOUR > start:
                key = (tenant_id, store_id)
                most[key] = max(most.get(key, 0), int(size))
        per_tenant: dict[str, int] = defaultdict(int)
        for (tenant_id, _), size in most.items():
            per_tenant[tenant_id] += size
        results.append(dict(per_tenant))
    return results
