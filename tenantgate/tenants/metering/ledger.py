"""A tenant's billable totals for the month so far, from the ledger: what monthly quotas and budgets start from.

The limit stores' month counters are a cache of these totals. When a counter is missing (a process starting, Redis
restarted without persistence, an eviction or failover, a quota or budget set in the middle of the month) it is
seeded from here, so a restart or a flush never forgets what a tenant used and spent.

The total is the stored usage (the day rollups, which hold exactly the billable events written) plus this process's
spooled events that are not in the database yet (so nothing is admitted twice because the writer is behind).
Events other nodes have spooled but not yet written (normally under a second's worth) are not visible here; a
seed is corrected once they are (``settled_before``: the totals of what ended before the seed, read again later).
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
_LONGEST = 3600
"""Requests running longer than this when a counter is seeded are not told apart from finished ones (counted twice)."""
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

    async def month_totals(
        self, tenant_id: str, month_start: float, settled_before: float | None = None
    ) -> MonthTotals:
        """The month's totals so far; ``settled_before``: only of the events that occurred and ended before that
        moment (requests still running then are left out; see ``_events``)."""
        pending = await asyncio.to_thread(self._spooled, tenant_id, month_start, settled_before)
        async with self._sessions() as session:
            if settled_before is None:
                stored_totals = await self._rollups(session, tenant_id, _DAY, month_start, None)
            else:
                moment = settled_before
                day, minute = int(moment) // _DAY * _DAY, int(moment) // _MINUTE * _MINUTE
                days = await self._rollups(session, tenant_id, _DAY, month_start, day)
                minutes = await self._rollups(session, tenant_id, _MINUTE, max(month_start, day), minute)
                rest = await self._events(session, tenant_id, max(month_start, moment - _LONGEST), minute, moment)
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
    async def _events(
        session: AsyncSession, tenant_id: str, start: float, minute: int, moment: float
    ) -> tuple[int, int]:
        """What the rollups before ``minute`` leave to correct for ``moment``: plus the events of ``[minute,
        moment)`` that ended before it, minus the events the rollups count that had not ended by then (requests
        running at ``moment``; only those that started after ``start``). An event ends ``latency_ms`` after it
        occurred (a batch line or a background response's settlement, without one, when it occurred)."""
        E = UsageEventRow
        cost = sum((getattr(E, name) for name in COST_PARTS[1:]), E.cost_input_nusd)
        statement = select(E.occurred_at, E.latency_ms, E.input_tokens + E.output_tokens, cost).where(
            E.tenant_id == tenant_id,
            E.billable.is_(True),
            E.occurred_at >= datetime.fromtimestamp(start, UTC),
            E.occurred_at < datetime.fromtimestamp(moment, UTC),
        )
        tokens = nanos = 0
        for occurred, latency, used, spent in (await session.execute(statement)).all():
            at = (occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)).timestamp()
            ended = at + (latency or 0) / 1000 < moment
            sign = (1 if ended else 0) if at >= minute else (0 if ended else -1)
            tokens, nanos = tokens + sign * int(used or 0), nanos + sign * int(spent or 0)
        return tokens, nanos

    def _spooled(self, tenant_id: str, month_start: float, before: float | None) -> dict[str, tuple[int, int]]:
        """Billable events of ``tenant_id`` since ``month_start`` (that ended before ``before``) in this process's
        spool past its checkpoints."""
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
                if event is not None and (before is None or _ended(event) < before):
                    priced = price_event(self._prices, event)
                    cost = sum(priced[name] for name in _COSTS)
                    found[event["id"]] = (event["input_tokens"] + event["output_tokens"], cost)
        return found


def _ended(event: dict[str, Any]) -> float:
    latency = event.get("latency_ms")
    return float(event["occurred_at"]) + (latency / 1000 if isinstance(latency, int) else 0.0)


def _billable(line: bytes | bytearray, month_start: float) -> dict[str, Any] | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not event.get("billable") or event.get("occurred_at", 0) < month_start:
        return None
    return event
