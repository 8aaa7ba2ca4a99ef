"""Shared resources of one server process, created by the app factory and opened/closed by the lifespan."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantgate.core.principal import Principal
from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.observability.telemetry import Telemetry
from tenantgate.platform import interpreter
from tenantgate.platform.background.poller import LEASE_NAME, Poller
from tenantgate.platform.background.settlement import Settler
from tenantgate.platform.background.vector_store_watch import VectorStoreWatch
from tenantgate.platform.credentials import TenantKeys
from tenantgate.platform.deps import Health
from tenantgate.platform.limits.cost import PriceBookCost
from tenantgate.platform.limits.hook import Limiter
from tenantgate.platform.limits.pacing import RefusalPacer
from tenantgate.platform.proxy.hooks import ExchangeHook, Hooks
from tenantgate.platform.proxy.object_answers import ObjectAnswersHook
from tenantgate.platform.proxy.services import ProxyServices
from tenantgate.platform.proxy.unfinished import UnfinishedStreams
from tenantgate.platform.proxy.unpriced import UnpricedRefusal
from tenantgate.platform.refusal_lane import RefusalLane
from tenantgate.platform.upstream.client import UpstreamClient
from tenantgate.platform.upstream.config import gateway_config
from tenantgate.platform.upstream.guard import TenantUpstreamGuard, UpstreamURLRefused
from tenantgate.platform.upstream.network import OutboundNetwork
from tenantgate.platform.upstream.registry import Routing, Upstream
from tenantgate.platform.workslots import WorkSlots
from tenantgate.settings import Settings
from tenantgate.tenants.auth_throttle import AuthThrottle, FailureLimits
from tenantgate.tenants.cache import KeyCache
from tenantgate.tenants.file_room import FileRoom
from tenantgate.tenants.invalidation import InvalidationBus, channel_name
from tenantgate.tenants.invalidation_log import InvalidationLog
from tenantgate.tenants.last_used import LastUsedTracker
from tenantgate.tenants.lease import DatabaseLease
from tenantgate.tenants.metering.ledger import Ledger
from tenantgate.tenants.metering.meter import Metering
from tenantgate.tenants.models import TenantUpstreamKey
from tenantgate.tenants.object_index import ObjectIndex
from tenantgate.tenants.objects import ObjectOwnership, Owner
from tenantgate.tenants.repository import principal_for_key_hash, tenant_upstream_keys
from tenantgate.tenants.secrets import SecretBox
from tenantgate.tenants.vector_store_usage import VectorStoreUsageLog
from tenantgate.wire.resp import RedisError, RedisRefused, RespClient

log = logging.getLogger("tenantgate")


def redis_client(settings: Settings) -> RespClient | None:
    """The process's one Redis client, for the limiter and everything else, or None without TENANTGATE_REDIS_URL.

    One timeout policy, the limiter's: Redis counts as down when it sends nothing for
    ``TENANTGATE_LIMITS_REDIS_TIMEOUT_MS`` while answers are owed, or takes that long to connect (a busy event loop
    here delays replies without any silence from Redis, so load is never taken for an outage). The other callers
    can all fail that fast: an object's owner is also written to and read from the database, an invalidation that
    cannot be published is caught up by the key cache's TTL, failed authentications are then counted per process,
    and readiness reports what the limiter sees. The
    invalidation subscription has a connection of its own and nobody waits on it: it connects, and has its idle PING
    answered, with two seconds of patience, so a short stall does not make every process drop its key cache.
    """
    if not settings.redis_url:
        return None
    silence = settings.limits_redis_timeout_ms / 1000
    return RespClient.from_url(settings.redis_url, connect_timeout=silence, stall_timeout=silence, subscribe_timeout=2)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.routing = Routing(gateway_config(settings))
        self.upstream_guard = TenantUpstreamGuard(
            settings.tenant_upstream_allowed_networks, allow_http=settings.tenant_upstream_allow_http
        )
        self.http = UpstreamClient(
            settings.upstream_pool_size,
            self.upstream_guard,
            settings.upstream_http_client,
            OutboundNetwork.from_settings(settings),
        )
        self.unfinished_streams = UnfinishedStreams(settings.unfinished_stream_retrieve_seconds)
        self.secret_box = SecretBox(settings.secret_key_bytes)
        self.key_cache = KeyCache(
            self._load_principal,
            ttl=settings.key_cache_ttl_seconds,
            negative_ttl=settings.key_cache_negative_ttl_seconds,
        )
        self.redis = redis_client(settings)
        self.last_used = LastUsedTracker(self.sessions, interval_seconds=settings.last_used_flush_seconds)
        failure_limits = FailureLimits(settings.auth_failures_per_source_per_minute, settings.auth_failures_per_minute)
        self.auth_throttle = AuthThrottle(
            self.redis, settings.redis_prefix, {"tenant": failure_limits, "admin": failure_limits}
        )
        self.health = Health(lambda: self.shutting_down, self.check_database, self.check_redis)
        self.tenant_keys = TenantKeys(self.key_cache, self.auth_throttle, settings.secret_key_bytes)
        self.shutting_down = False
        self.ownership = ObjectOwnership(self.sessions, self.redis, settings.redis_prefix)
        self.telemetry = Telemetry(settings)
        self.telemetry.observe(
            key_cache=self.key_cache,
            engine=self.engine,
            redis=self.redis,
            upstreams=self.routing.upstreams.values(),
            check_database=self.check_database,
            check_redis=self.check_redis,
            auth_failures=self.auth_throttle.failures,
        )
        # Limits, metering and telemetry register here, in order (see platform/proxy/hooks.py).
        self.metering = Metering(settings, self.engine, self.sessions)
        # Files, uploads, batches and background responses: the tenants' index (batches hold limits until they end).
        self.objects = ObjectIndex(self.sessions)
        self.file_room = FileRoom(self.sessions)
        self.limiter = Limiter.from_settings(
            settings,
            self.redis,
            cost_estimator=PriceBookCost(self.metering.prices),
            ledger=Ledger(self.sessions, self.metering.spool, self.metering.prices),
            held_by_batches=self.objects.held,
        )
        self.invalidation = InvalidationBus(
            self.key_cache,
            self.redis,
            channel_name(settings.redis_prefix),
            on_prices=self.metering.writer.prices_changed,
            db_log=None if self.redis is not None else InvalidationLog(self.sessions),
        )
        self.telemetry.registry.register_counter(
            "tenantgate.limits.admissions",
            self.limiter.store.admissions_by_source,
            unit="{request}",
            description="Limit checks by where they were decided: a Redis script call, a credit Redis granted this "
            "process (no round trip), or process memory (no Redis, or Redis down and failing open)",
            labels=("tenantgate.limits.source",),
        )
        stats = self.limiter.store.stats
        self.telemetry.registry.register_counter(
            "tenantgate.limits.redis_fallbacks",
            lambda: stats.fallbacks,
            unit="{request}",
            description="Limit checks decided in process memory because Redis failed (failing open)",
        )
        self.telemetry.registry.register_counter(
            "tenantgate.limits.redis_errors",
            lambda: stats.errors + stats.settle_errors,
            unit="{error}",
            description="Limiter calls to Redis that failed or timed out, admissions and settlements",
        )
        self.telemetry.register_metering_gauges(
            buffer_depth=self.metering.held_events,
            spool_bytes=self.metering.pending_bytes,
            write_lag_seconds=self.metering.write_lag_seconds,
            rejected_events=self.metering.rejected_events,
            unpriced_events=self.metering.unpriced_events,
        )
        # Refusing an unpriced request comes before the limiter, so a refusal uses up no limit.
        refuse: list[ExchangeHook] = []
        if settings.unpriced_models == "refuse":
            refuse.append(UnpricedRefusal(self.metering.prices, self.routing))
        # Their billing and the one poller.
        self.settler = Settler(
            http=self.http,
            ownership=self.ownership,
            index=self.objects,
            metering=self.metering,
            limiter=self.limiter,
            reach=self.reach,
        )
        poll = settings.object_poll_seconds
        vector_store_usage = VectorStoreUsageLog(self.sessions)
        self.poller = Poller(
            self.objects,
            DatabaseLease(self.sessions, LEASE_NAME, ttl=max(3 * poll, 5.0)),
            self.settler,
            poll,
            VectorStoreWatch(
                self.http, self.objects, vector_store_usage, self.reach, settings.vector_store_usage_seconds
            ),
        )
        object_answers = ObjectAnswersHook(
            self.ownership,
            self.objects,
            poll_seconds=poll,
            batch_seen=self.settler.batch_seen,
            vector_store_usage=vector_store_usage,
            vector_store_seconds=settings.vector_store_usage_seconds,
        )
        self.hooks = Hooks([self.telemetry.hook, *refuse, self.limiter, object_answers, self.metering.hook])
        # Model requests past admission share the worker by tenant (platform/workslots.py).
        self.work_slots = WorkSlots(
            settings.work_slots,
            settings.work_queue_per_tenant,
            settings.work_queue_timeout_seconds,
            settings.work_slot_upstream_seconds,
            settings.work_slots_shared,
        )
        # 429s to a key that keeps hammering go out late (platform/limits/pacing.py).
        self.pacer = RefusalPacer(
            settings.refusal_delay_seconds, settings.refusal_delay_after, settings.refusal_delay_max_held
        )
        # Refusals from memory, answered by the connection before the ASGI stack (platform/refusal_lane.py).
        self.refusal_lane = (
            RefusalLane(
                self.limiter.known,
                self.tenant_keys,
                self.pacer,
                self.hooks,
                self.last_used,
                self.telemetry.http,
                traced=self.telemetry.tracing is not None,
            )
            if self.limiter.known is not None and not settings.access_log
            else None
        )
        self._register_work_slot_metrics()
        self.proxy = ProxyServices(
            settings=settings,
            routing=self.routing,
            http=self.http,
            hooks=self.hooks,
            limiter=self.limiter,
            pacer=self.pacer,
            work_slots=self.work_slots,
            ownership=self.ownership,
            objects=self.objects,
            file_room=self.file_room,
            metering=self.metering,
            unfinished_streams=self.unfinished_streams,
            settler=self.settler,
        )
        """What the /v1 proxy is given (proxy/services.py)."""

    def _register_work_slot_metrics(self) -> None:
        """Fair share, local refusals and back-pressure, as metrics (docs/observability.md)."""
        registry, slots = self.telemetry.registry, self.work_slots
        registry.register_gauge(
            "tenantgate.workslots.in_use",
            lambda: slots.in_use,
            unit="{request}",
            description="Work slots held by model requests between admission and the start of their answer",
        )
        registry.register_gauge(
            "tenantgate.workslots.queue.depth",
            slots.waiting,
            unit="{request}",
            description="Model requests waiting for a work slot (every slot of the worker is held)",
        )
        known, pacer = self.limiter.known, self.pacer
        registry.register_counter(
            "tenantgate.limits.local_refusals",
            lambda: known.refused if known is not None else 0,
            unit="{request}",
            description="Requests refused from memory: their key or tenant was known to be over its RPM or RPD "
            "until the window frees room (no limiter round trip)",
        )
        registry.register_counter(
            "tenantgate.limits.delayed_refusals",
            lambda: [(("delayed",), pacer.delayed), (("at_once",), pacer.over_capacity)],
            unit="{request}",
            description="429s to a key refused more than TENANTGATE_REFUSAL_DELAY_AFTER times within a second: sent "
            "after the delay, or at once because TENANTGATE_REFUSAL_DELAY_MAX_HELD refusals were waiting already",
            labels=("outcome",),
        )
        stats = slots.stats
        registry.register_counter(
            "tenantgate.workslots.waits",
            lambda: stats.granted_after_wait,
            unit="{request}",
            description="Model requests that waited for a work slot and got one",
        )
        registry.register_counter(
            "tenantgate.workslots.wait.time",
            lambda: stats.wait_seconds,
            unit="s",
            description="Total time requests spent waiting for a work slot (divide by the waits for the mean)",
        )
        registry.register_counter(
            "tenantgate.workslots.refusals",
            lambda: [(("queue_full",), stats.queue_full), (("timeout",), stats.timed_out)],
            unit="{request}",
            description="Requests refused for want of a work slot: their tenant's queue was full (429), or no "
            "slot freed in time (503)",
            labels=("reason",),
        )
        registry.register_counter(
            "tenantgate.workslots.abandoned",
            lambda: stats.left_queue,
            unit="{request}",
            description="Waiting requests whose client disconnected before a work slot freed",
        )
        registry.register_counter(
            "tenantgate.workslots.passed_on",
            lambda: stats.passed_on,
            unit="{request}",
            description="Work slots passed on to a waiting request by requests waiting on Redis or their upstream",
        )

    async def _load_principal(self, key_hash: str) -> Principal | None:
        async with self.sessions() as session:
            principal = await principal_for_key_hash(session, key_hash)
            if principal is None:
                return None
            stored = await tenant_upstream_keys(session, principal.tenant_id)
        keys: dict[str, SecretStr] = {}
        own: dict[str, Upstream] = {}
        for row in stored:
            key = self.secret_box.decrypt(row.ciphertext)
            if key is None:
                continue
            keys[row.upstream] = SecretStr(key)
            own_upstream = self._own_upstream(row, key)
            if own_upstream is not None:
                own[row.upstream] = own_upstream
        return dataclasses.replace(principal, upstream_keys=keys, own_upstreams=own) if keys else principal

    def _own_upstream(self, row: TenantUpstreamKey, key: str) -> Upstream | None:
        """The tenant's endpoint for a BYOK record with a base URL; the connector re-checks every address."""
        upstream = self.routing.upstreams.get(row.upstream)
        if row.base_url is None or upstream is None:
            return None
        refused = None
        try:
            self.upstream_guard.parse(row.base_url)
        except UpstreamURLRefused as exc:
            refused = str(exc)
            log.warning("tenant %s: base URL for upstream %r refused: %s", row.tenant_id, row.upstream, refused)
        return upstream.for_tenant(row.base_url, key, refused=refused)

    async def reach(self, owner: Owner) -> tuple[Upstream, dict[str, str] | None] | None:
        """The upstream and credentials that hold an owner's objects, outside of its requests (the poller's): the
        platform's, or the tenant's current BYOK record for that upstream (None without one)."""
        upstream = self.routing.upstreams.get(owner.upstream)
        if upstream is None or owner.account == "platform":
            return None if upstream is None else (upstream, None)
        async with self.sessions() as session:
            rows = await tenant_upstream_keys(session, owner.tenant_id)
        for row in rows:
            if row.upstream == owner.upstream:
                key = self.secret_box.decrypt(row.ciphertext)
                if key is None:
                    return None
                return self._own_upstream(row, key) or upstream, {owner.upstream: key}
        return None

    async def start(self) -> None:
        await self._check_redis_at_start()
        await self.http.start()
        await self.ownership.start()
        await self.invalidation.start()
        self.last_used.start()
        await self.metering.start()
        await self.poller.start()
        await self.telemetry.start()
        if self.settings.interpreter_tuning:
            interpreter.settle_after_startup()

    async def close(self) -> None:
        await self.telemetry.close()
        await self.poller.close()
        await self.settler.close()
        await self.last_used.stop()
        await self.invalidation.stop()
        await self.ownership.close()
        await self.objects.drain()
        await self.http.close()
        await self.limiter.close()
        await self.metering.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()

    def begin_shutdown(self) -> None:
        """From now on /readyz answers 503 (in-flight and new requests are still served)."""
        self.shutting_down = True

    async def _check_redis_at_start(self) -> None:
        """Refuse to start on a Redis the limiter cannot write to (a replica, a Sentinel, a Cluster node): every
        limit check would fail and fall back to per-process memory while /readyz said all is well. A Redis that
        cannot be reached is no reason not to start (limits fail open or closed until it answers)."""
        if self.redis is None:
            return
        try:
            await self.redis.check()
        except RedisRefused as exc:
            log.critical("TENANTGATE_REDIS_URL: %s", exc)
            raise RedisRefused(f"TENANTGATE_REDIS_URL: {exc}") from None
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("Redis cannot be reached at start (%s); the limiter falls back until it answers", exc)

    async def check_redis(self, limit_seconds: float = 2.0) -> bool | None:
        """None when no Redis is configured; False when it cannot be reached or cannot take writes (a replica
        after a failover, a Cluster node): for /readyz, the dependency gauge and the console's dependency card."""
        if self.redis is None:
            return None
        try:
            async with asyncio.timeout(limit_seconds):
                await self.redis.check()
        except RedisRefused as exc:
            log.warning("redis readiness check failed: %s", exc)
            return False
        except Exception as exc:
            log.warning("redis readiness check failed: %s", type(exc).__name__)
            return False
        return True

    async def check_database(self, limit_seconds: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(limit_seconds), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("database readiness check failed: %s", type(exc).__name__)
            return False
        return True
