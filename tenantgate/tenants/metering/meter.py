"""Metering of one server process: price book, spool, batch writer and the proxy hook, started and stopped
together by the Runtime."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantgate.settings import Settings
from tenantgate.tenants.metering.hook import MeteringHook
from tenantgate.tenants.metering.models import PriceOverrideRow
from tenantgate.tenants.metering.pricing import Price, PriceBook, PriceOverride
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.store import store_for
from tenantgate.tenants.metering.writer import MeterWriter
from tenantgate.tenants.models import Tenant

log = logging.getLogger("tenantgate.metering")


class Metering:
    def __init__(self, settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.prices = PriceBook.load()
        self.spool = Spool(settings.spool_dir)
        self.store = store_for(engine)
        self.writer = MeterWriter(
            self.spool,
            self.store,
            self.prices,
            interval=settings.metering_flush_interval_seconds,
            batch_size=settings.metering_batch_size,
            refresh_prices=self.load_overrides,
            model_label_limit=settings.metrics_model_label_limit,
        )
        self.hook = MeteringHook(self.spool, self.writer)
        self._backlog_since: float | None = None

    # Health, read by telemetry at collection time (cheap, no I/O).

    def held_events(self) -> int:
        """Events only in memory because the spool could not be written (e.g. a full disk)."""
        return len(self.spool.held)

    def pending_bytes(self) -> int:
        """Spooled bytes not yet in the database."""
        return sum(max(0, segment.size - segment.committed) for segment in self.spool.segments())

    def rejected_events(self) -> int:
        """Events the database refused and the writer set aside in the dead-letter file (since start)."""
        return self.writer.rejected

    def unpriced_events(self) -> list[tuple[tuple[str], float]]:
        """Billable events written without a price (since start), by model (a bounded label)."""
        return self.writer.unpriced.readings()

    def write_lag_seconds(self) -> float:
        """How long the database has been behind: 0 when caught up, else time since the backlog appeared."""
        if self.pending_bytes() == 0 and not self.spool.held:
            self._backlog_since = None
            return 0.0
        now = time.monotonic()
        if self._backlog_since is None:
            self._backlog_since = now
        return now - self._backlog_since

    async def start(self) -> None:
        # A spool directory that cannot be written is a configuration error: refuse to serve unmetered.
        await asyncio.to_thread(self.spool.open)
        await self.store.open()
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close(self.settings.metering_shutdown_flush_seconds)
        await self.store.close()

    async def load_overrides(self, book: PriceBook) -> None:
        await load_price_overrides(self.sessions, book)

    async def reload_prices(self) -> None:
        """After this process changed the overrides: use them from now on. A failure is logged, not raised (the
        change is committed; the writer retries in its next cycle)."""
        try:
            await self.writer.refresh_prices()
        except Exception as exc:
            log.warning(
                "metering: reloading price overrides failed (%s); retrying with the next write", type(exc).__name__
            )


async def load_price_overrides(sessions: async_sessionmaker[AsyncSession], book: PriceBook) -> None:
    """Load every price override (a small table) and which plan each tenant with a plan override is on."""
    async with sessions() as session:
        rows = (await session.execute(select(PriceOverrideRow))).scalars().all()
        plan_ids = {row.plan_id for row in rows if row.plan_id and not row.tenant_id}
        tenant_plans: dict[str, str] = {}
        if plan_ids:
            result = await session.execute(select(Tenant.id, Tenant.plan_id).where(Tenant.plan_id.in_(plan_ids)))
            tenant_plans = {tenant_id: plan_id for tenant_id, plan_id in result.all() if plan_id}
    overrides = []
    for row in rows:
        try:
            price = Price.parse(
                {"input": row.input_per_1m, "cached_input": row.cached_input_per_1m, "output": row.output_per_1m}
            )
        except (ValueError, ArithmeticError):
            log.error("metering: price override %s has an invalid price and is ignored", row.id)
            continue
        overrides.append(
            PriceOverride(
                id=row.id,
                model=row.model,
                price=price,
                effective_from=row.effective_from.timestamp(),
                tenant_id=row.tenant_id,
                plan_id=row.plan_id,
            )
        )
    book.set_overrides(overrides, tenant_plans)
