"""One process's telemetry: built from Settings by the Runtime, started and closed by the app's lifespan.

Other components add their own gauges through ``telemetry.registry.register_gauge`` (see metrics.py), e.g. the
metering writer with the names declared below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantgate import __version__
from tenantgate.observability.exposition import (
    SNAPSHOT_INTERVAL_SECONDS,
    SnapshotStore,
    WorkerSnapshot,
    merge,
    snapshot_of,
)
from tenantgate.observability.hook import MODEL, GatewayMetrics, TelemetryHook, UpstreamLike
from tenantgate.observability.http import HttpMetrics
from tenantgate.observability.instrument import instrument_engine, instrument_redis
from tenantgate.observability.metrics import GaugeReading, MetricData, MetricRegistry
from tenantgate.observability.otlp import metric_exporters, span_exporters, to_metrics_data
from tenantgate.observability.process import register_process_metrics
from tenantgate.observability.series import FRAME_SECONDS, Frame, History, HistoryStore
from tenantgate.observability.spanbatch import SpanBatcher
from tenantgate.observability.tracing import Tracing
from tenantgate.settings import Settings
from tenantgate.wire.prometheus import render_prometheus
from tenantgate.wire.resp import RespClient

log = logging.getLogger("tenantgate.telemetry")

GaugeCallback = Callable[[], float | int]

HEALTH_INTERVAL_SECONDS = 15.0


class CacheStats(Protocol):
    """What telemetry reads of a cache (the key cache): its hits, misses and size."""

    hits: int
    misses: int

    def __len__(self) -> int: ...


class Telemetry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance = uuid.uuid4().hex[:16]
        self.resource = Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.version": __version__,
                "service.instance.id": self.instance,
            }
        )
        self.scope = InstrumentationScope("tenantgate", __version__)
        self.registry = MetricRegistry()
        self.metrics_enabled = settings.metrics_enabled
        self.http = HttpMetrics(self.registry) if self.metrics_enabled else None
        self.gateway = GatewayMetrics(self.registry) if self.metrics_enabled else None
        self.tracing: Tracing | None = None
        if settings.tracing_enabled:
            self.tracing = Tracing(settings, self.resource, self.scope)
            for exporter in span_exporters(settings):
                self.tracing.add_span_processor(
                    SpanBatcher(
                        exporter,
                        schedule_delay=settings.otel_bsp_schedule_delay_ms / 1000,
                        max_queue_size=settings.otel_bsp_max_queue_size,
                        max_batch=settings.otel_bsp_max_export_batch_size,
                    )
                )
        self.metric_exporters: list[MetricExporter] = metric_exporters(settings) if self.metrics_enabled else []
        self.store = (
            SnapshotStore(settings.metrics_dir, os.getpid(), self.instance)
            if self.metrics_enabled and settings.metrics_dir is not None
            else None
        )
        self.history = History()
        self.history_store = (
            HistoryStore(self.store.directory, os.getpid(), self.instance) if self.store is not None else None
        )
        self.hook = TelemetryHook(settings, self.gateway, self.tracing)
        self.started_ns = time.time_ns()
        self.health: dict[str, float] = {}
        self._health_checks: dict[str, Callable[[], Awaitable[bool | None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.registry.register_gauge(
            "tenantgate.build.info",
            lambda: [((__version__,), 1.0)],
            description="Always 1; the version label says which tenantgate is running",
            labels=("tenantgate.version",),
            aggregation="max",
        )
        register_process_metrics(self.registry)

    # --- wiring --------------------------------------------------------------------------------------------

    def observe(
        self,
        *,
        key_cache: CacheStats,
        engine: AsyncEngine,
        redis: RespClient | None,
        upstreams: Iterable[UpstreamLike],
        check_database: Callable[[], Awaitable[bool]],
        check_redis: Callable[[], Awaitable[bool | None]],
        auth_failures: Mapping[tuple[Any, str], int] | None = None,
    ) -> None:
        """Instrument the runtime's shared resources and export their state."""
        if self.tracing is not None:
            instrument_engine(engine, self.tracing)
            if redis is not None:
                instrument_redis(redis, self.tracing)
        self.hook.know_upstreams(upstreams)
        registry = self.registry
        registry.register_counter(
            "tenantgate.key_cache.lookups",
            lambda: [(("hit",), float(key_cache.hits)), (("miss",), float(key_cache.misses))],
            unit="{lookup}",
            description="API key lookups by the in-process cache, by result (a miss queries the database)",
            labels=("tenantgate.cache.result",),
        )
        registry.register_gauge(
            "tenantgate.key_cache.entries",
            lambda: len(key_cache),
            unit="{entry}",
            description="Resolved API keys held in the in-process cache",
        )
        if auth_failures is not None:
            registry.register_counter(
                "tenantgate.auth.failures",
                lambda: [(key, float(count)) for key, count in list(auth_failures.items())],
                unit="{attempt}",
                description="Failed authentications by surface (tenant keys, admin tokens) and reason: missing, "
                "invalid, or throttled (refused unchecked while the source or everybody is over the failure limit)",
                labels=("tenantgate.auth.surface", "reason"),
            )
        self._health_checks["database"] = check_database
        if redis is not None:
            self._health_checks["redis"] = check_redis
        registry.register_gauge(
            "tenantgate.dependency.up",
            lambda: [((name,), value) for name, value in self.health.items()],
            description="1 when the last check reached the dependency, 0 when it did not",
            labels=("tenantgate.dependency",),
            aggregation="min",
        )

    def register_metering_gauges(
        self,
        *,
        buffer_depth: GaugeCallback,
        spool_bytes: GaugeCallback,
        write_lag_seconds: GaugeCallback,
        rejected_events: GaugeCallback,
        unpriced_events: Callable[[], GaugeReading] | None = None,
    ) -> None:
        """The metering writer's health, under the names the dashboards and alert rules use.

        ``buffer_depth``: usage events this worker holds in memory, not yet durably written (summed over workers);
        ``spool_bytes``: bytes in the local spool waiting for the database (max over workers: a shared directory);
        ``write_lag_seconds``: age of the oldest event not yet in the database, 0 when caught up (max);
        ``rejected_events``: a counter, events this worker set aside because the database refused them;
        ``unpriced_events``: a counter by model, billable events this worker wrote without a price.
        Each callback runs at collection time on the event loop: return a number, quickly, without I/O.
        """
        self.registry.register_gauge(
            "tenantgate.metering.buffer.depth",
            buffer_depth,
            unit="{event}",
            description="Usage events held in memory and not yet durably written",
        )
        self.registry.register_gauge(
            "tenantgate.metering.spool.size",
            spool_bytes,
            unit="By",
            description="Bytes in the local metering spool waiting for the database",
            aggregation="max",
        )
        self.registry.register_gauge(
            "tenantgate.metering.write.lag",
            write_lag_seconds,
            unit="s",
            description="Age of the oldest usage event not yet written to the database (0 when caught up)",
            aggregation="max",
        )
        self.registry.register_counter(
            "tenantgate.metering.rejected_events",
            rejected_events,
            unit="{event}",
            description="Usage events the database refused, set aside in the spool's dead-letter file for replay",
        )
        if unpriced_events is not None:
            self.registry.register_counter(
                "tenantgate.metering.unpriced_events",
                unpriced_events,
                unit="{event}",
                description="Billable usage events stored without a price (no price for the model, its options or "
                "what the upstream reported); not part of any cost until priced",
                labels=(MODEL,),
            )

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.metrics_enabled:
            return
        await self.check_health()
        self._tasks.append(asyncio.create_task(self._every(HEALTH_INTERVAL_SECONDS, self.check_health)))
        if self.store is not None:
            await self.write_snapshot()  # visible to the other workers' scrapes from the start
            self._tasks.append(asyncio.create_task(self._every(SNAPSHOT_INTERVAL_SECONDS, self.write_snapshot)))
        if self.metric_exporters:
            interval = self.settings.otel_metric_export_interval_ms / 1000
            self._tasks.append(asyncio.create_task(self._every(interval, self.export_metrics)))
        self.sample_history()
        self._tasks.append(asyncio.create_task(self._on_frame_boundaries()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.store is not None:
            # Counters of an exited worker still count; its gauges no longer do.
            await self.write_snapshot(final=True)
        if self.metric_exporters:
            await self.export_metrics()
            for exporter in self.metric_exporters:
                await asyncio.to_thread(exporter.shutdown)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:
                log.exception("telemetry background work failed")

    async def _on_frame_boundaries(self) -> None:
        """Samples just after each frame boundary of the wall clock, so every worker's frames line up."""
        while True:
            await asyncio.sleep(FRAME_SECONDS - time.time() % FRAME_SECONDS + 0.05)
            try:
                self.sample_history()
                if self.history_store is not None:
                    await asyncio.to_thread(self.history_store.write, self.history)
            except Exception:
                log.exception("telemetry history sample failed")

    def sample_history(self) -> None:
        self.history.sample(self.collect())

    async def histories(self) -> list[list[list[Frame]]]:
        """Every worker's history (its tiers of frames), this worker's first."""
        own = [list(frames) for frames in self.history.frames]
        if self.history_store is None:
            return [own]
        return [own, *await asyncio.to_thread(self.history_store.read_others)]

    async def check_health(self) -> None:
        for name, check in self._health_checks.items():
            result = await check()
            if result is not None:
                self.health[name] = 1.0 if result else 0.0

    # --- metrics out ---------------------------------------------------------------------------------------

    def collect(self) -> list[MetricData]:
        return self.registry.collect()

    async def write_snapshot(self, *, final: bool = False) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.write, snapshot_of(self.collect(), self.instance, final=final))

    async def snapshots(self) -> list[WorkerSnapshot]:
        """This worker's fresh snapshot first, then every other worker's latest one."""
        own = snapshot_of(self.collect(), self.instance)
        if self.store is None:
            return [own]
        store = self.store

        def exchange_files() -> list[WorkerSnapshot]:
            store.write(own)  # before reading: what any later scrape sees of this worker never goes backwards
            return store.read_others()

        return [own, *await asyncio.to_thread(exchange_files)]

    async def merged(self) -> list[MetricData]:
        return await asyncio.to_thread(merge, await self.snapshots())

    async def prometheus(self) -> bytes:
        snapshots = await self.snapshots()
        return await asyncio.to_thread(lambda: render_prometheus(merge(snapshots)))

    async def export_metrics(self) -> None:
        data = to_metrics_data(self.collect(), self.resource, self.scope, self.started_ns)
        for exporter in self.metric_exporters:
            await asyncio.to_thread(exporter.export, data)
