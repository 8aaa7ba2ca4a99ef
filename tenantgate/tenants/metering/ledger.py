"""A tenant's billable totals for the month so far, from the ledger: what monthly quotas and budgets start from.

The limit stores' month counters are a cache of these totals. When a counter is missing (a process starting, Redis
restarted without persistence, an eviction or failover, a quota or budget set in the middle of the month) it is
seeded from here, so a restart or a flush never forgets what a tenant used and spent.

The total is the stored usage (the day rollups, which hold exactly the billable events written) plus this process's
spooled events that are not in the database yet (so nothing is admitted twice because the writer is behind).
Events other nodes have spooled but not yet written (normally under a second's worth) are not visible here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.metering.models import COST_PARTS, UsageEventRow, UsageRollupRow
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.writer import price_event

_DAY = 86400
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

    async def month_totals(self, tenant_id: str, month_start: float) -> MonthTotals:
        pending = await asyncio.to_thread(self._spooled, tenant_id, month_start)
        start = int(month_start) // _DAY * _DAY
        tokens = UsageRollupRow.input_tokens + UsageRollupRow.output_tokens
        cost = sum((getattr(UsageRollupRow, name) for name in COST_PARTS[1:]), UsageRollupRow.cost_input_nusd)
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(func.coalesce(func.sum(tokens), 0), func.coalesce(func.sum(cost), 0)).where(
                        UsageRollupRow.width == _DAY,
                        UsageRollupRow.tenant_id == tenant_id,
                        UsageRollupRow.bucket_start >= start,
                    )
                )
            ).one()
            stored: set[str] = set()
            if pending:
                ids = list(pending)
                for offset in range(0, len(ids), 500):
                    chunk = ids[offset : offset + 500]
                    found = await session.execute(select(UsageEventRow.id).where(UsageEventRow.id.in_(chunk)))
                    stored.update(found.scalars())
        unwritten = [totals for event_id, totals in pending.items() if event_id not in stored]
        return MonthTotals(
            int(row[0]) + sum(t for t, _ in unwritten),
            int(row[1]) + sum(c for _, c in unwritten),
        )

    def _spooled(self, tenant_id: str, month_start: float) -> dict[str, tuple[int, int]]:
        """Billable events of ``tenant_id`` since ``month_start`` in this process's spool past its checkpoints."""
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
                if event is not None:
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
