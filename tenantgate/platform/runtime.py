"""Shared resources of one server process, created by the app factory and opened/closed by the lifespan."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantgate import tokens
from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.platform.proxy.hooks import Hooks
from tenantgate.platform.upstream.client import Upstream
from tenantgate.settings import Settings
from tenantgate.tenants.cache import KeyCache
from tenantgate.tenants.metering.meter import Metering
from tenantgate.tenants.principal import Principal
from tenantgate.tenants.repository import principal_for_key_hash

log = logging.getLogger("tenantgate")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.upstream = Upstream(settings)
        self.key_cache = KeyCache(
            self._load_principal,
            ttl=settings.key_cache_ttl_seconds,
            negative_ttl=settings.key_cache_negative_ttl_seconds,
        )
        self.redis: Redis | None = (
            Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        self.shutting_down = False
        self.metering = Metering(settings, self.engine, self.sessions)
        # Limits, metering and telemetry register here, in order (see platform/proxy/hooks.py).
        self.hooks = Hooks([self.metering.hook])

    async def _load_principal(self, key_hash: str) -> Principal | None:
        async with self.sessions() as session:
            return await principal_for_key_hash(session, key_hash)

    async def start(self) -> None:
        await self.upstream.start()
        await self.metering.start()
        # Loading the tokenizer files takes a second or two: do it now, off the event loop, not on a request.
        await asyncio.to_thread(tokens.warm_up)

    async def close(self) -> None:
        await self.upstream.close()
        await self.metering.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()

    async def check_redis(self, limit_seconds: float = 2.0) -> bool | None:
        """None when no Redis is configured."""
        if self.redis is None:
            return None
        try:
            async with asyncio.timeout(limit_seconds):
                await self.redis.ping()
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
