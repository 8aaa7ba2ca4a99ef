"""A tenant's billable totals for the month so far, from the ledger: what monthly quotas and budgets start from.

The limit stores' month counters are a cache of these totals. When a counter is missing (a process starting, Redis
restarted without persistence, an eviction or failover, a quota or budget set in the middle of the month) it is
seeded from here, so a restart or a flush never forgets what a tenant used and spent.

The total is the stored usage (the day rollups, which hold exactly the billable events written) plus this process's
spooled events that are not in the database yet (so nothing is admitted twice because the writer is behind).
Events other nodes have spooled but not yet written (normally under a second's worth) are not visible here; a
seed is corrected once they are (``before``: the totals of what happened before the seed, read again later).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.metering.models import COST_PARTS, UsageEventRow, UsageRollupRow
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.writer import price_event

_DAY = 86400
_MINUTE = 60
_COSTS = COST_PARTS
_SCAN_LIMIT = 256 * 1024 * 1024
"""Most unwritten spool bytes read for one seed (a long database outage can leave more; those are not counted)."""


@dataclass(frozen=True, slots=True)
class MonthTotals:
    tokens: int
    """Input + output tokens of billable events (what a monthly token quota counts)."""
    cost_nusd: int
    """Their cost in nano-USD (unpriced events count 0)."""


class Ledger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], spool: Spool, prices: PriceBook) -> None:
        self._sessions = sessions
        self._spool = spool
        self._prices = prices

    async def month_totals(self, tenant_id: str, month_start: float, before: float | None = None) -> MonthTotals:
        """The month's totals so far; ``before``: only of the events that occurred before that moment (whole days
        and minutes from the rollups, the rest of its minute from the events)."""
        pending = await asyncio.to_thread(self._spooled, tenant_id, month_start, before)
        async with self._sessions() as session:
            if before is None:
                stored_totals = await self._rollups(session, tenant_id, _DAY, month_start, None)
            else:
                day, minute = int(before) // _DAY * _DAY, int(before) // _MINUTE * _MINUTE
                days = await self._rollups(session, tenant_id, _DAY, month_start, day)
                minutes = await self._rollups(session, tenant_id, _MINUTE, max(month_start, day), minute)
                rest = await self._events(session, tenant_id, max(month_start, minute), before)
                stored_totals = (days[0] + minutes[0] + rest[0], days[1] + minutes[1] + rest[1])
            stored: set[str] = set()
            if pending:
                ids = list(pending)
                for offset in range(0, len(ids), 500):
                    chunk = ids[offset : offset + 500]
                    found = await session.execute(select(UsageEventRow.id).where(UsageEventRow.id.in_(chunk)))
                    stored.update(found.scalars())
        unwritten = [totals for event_id, totals in pending.items() if event_id not in stored]
        return MonthTotals(
            stored_totals[0] + sum(t for t, _ in unwritten),
            stored_totals[1] + sum(c for _, c in unwritten),
        )

    @staticmethod
    async def _rollups(
        session: AsyncSession, tenant_id: str, width: int, start: float, end: int | None
    ) -> tuple[int, int]:
        """Tokens and cost of the tenant's rollups of ``width`` from ``start``'s bucket to ``end`` (exclusive)."""
        R = UsageRollupRow
        cost = sum((getattr(R, name) for name in COST_PARTS[1:]), R.cost_input_nusd)
        where = [R.width == width, R.tenant_id == tenant_id, R.bucket_start >= int(start) // width * width]
        if end is not None:
            where.append(R.bucket_start < end)
        statement = select(
            func.coalesce(func.sum(R.input_tokens + R.output_tokens), 0), func.coalesce(func.sum(cost), 0)
        )
        row = (await session.execute(statement.where(*where))).one()
        return int(row[0]), int(row[1])

    @staticmethod
    async def _events(session: AsyncSession, tenant_id: str, start: float, end: float) -> tuple[int, int]:
        """Tokens and cost of the tenant's billable events that occurred in ``[start, end)``."""
        E = UsageEventRow
        cost = sum((getattr(E, name) for name in COST_PARTS[1:]), E.cost_input_nusd)
        statement = select(
            func.coalesce(func.sum(E.input_tokens + E.output_tokens), 0), func.coalesce(func.sum(cost), 0)
        )
        row = (
            await session.execute(
                statement.where(
                    E.tenant_id == tenant_id,
                    E.billable.is_(True),
                    E.occurred_at >= datetime.fromtimestamp(start, UTC),
                    E.occurred_at < datetime.fromtimestamp(end, UTC),
                )
            )
        ).one()
        return int(row[0]), int(row[1])

    def _spooled(self, tenant_id: str, month_start: float, before: float | None) -> dict[str, tuple[int, int]]:
        """Billable events of ``tenant_id`` since ``month_start`` (and before ``before``) in this process's spool past
        its checkpoints."""
        marker = b'"tenant_id":' + orjson.dumps(tenant_id)
        found: dict[str, tuple[int, int]] = {}
        budget = _SCAN_LIMIT
        for segment in self._spool.segments():
            if segment.fd < 0 or budget <= 0:
                continue
            end = min(segment.size, segment.committed + budget)
            try:
                block, _, stop = segment.read_block(1 << 30, end)
            except OSError:
                continue  # the writer finished and removed it meanwhile: its events are in the database
            budget -= stop - segment.committed
            for line in block.split(b"\n"):
                if marker not in line:
                    continue
                event = _billable(line, month_start)
                if event is not None and (before is None or event["occurred_at"] < before):
                    priced = price_event(self._prices, event)
                    cost = sum(priced[name] for name in _COSTS)
                    found[event["id"]] = (event["input_tokens"] + event["output_tokens"], cost)
        return found


def _billable(line: bytes | bytearray, month_start: float) -> dict[str, Any] | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not event.get("billable") or event.get("occurred_at", 0) < month_start:
        return None
    return event
