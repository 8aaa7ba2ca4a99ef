"""What the FastAPI surface (admin, usage, console, ops) may use of a server process, one typed dependency each.

The app factory puts exactly these components on ``app.state`` (``platform/app.py``), and routes declare the ones
they use (``sessions: Sessions``), so a route's collaborators are in its signature; no route is handed the whole
runtime. The proxy path gets its collaborators at construction instead (``platform/proxy/router.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tenantgate.settings import Settings

if TYPE_CHECKING:
    from tenantgate.observability.telemetry import Telemetry
    from tenantgate.platform.credentials import TenantKeys
    from tenantgate.platform.limits.hook import Limiter
    from tenantgate.platform.upstream.guard import TenantUpstreamGuard
    from tenantgate.platform.upstream.registry import Routing
    from tenantgate.tenants.auth_throttle import AuthThrottle
    from tenantgate.tenants.cache import KeyCache
    from tenantgate.tenants.invalidation import InvalidationBus
    from tenantgate.tenants.metering.meter import Metering
    from tenantgate.tenants.object_index import ObjectIndex
    from tenantgate.tenants.secrets import SecretBox

COMPONENTS = (
    "settings", "engine", "sessions", "key_cache", "auth_throttle", "invalidation", "limiter", "metering",
    "telemetry", "routing", "upstream_guard", "secret_box", "objects", "health", "tenant_keys",
)  # fmt: skip
"""The names the app factory sets on ``app.state``; nothing else of the runtime is reachable from a route."""


def _component(request: Request, name: str) -> Any:
    return getattr(request.app.state, name)


def settings_of(request: Request) -> Settings:
    settings: Settings = _component(request, "settings")
    return settings


def engine_of(request: Request) -> AsyncEngine:
    engine: AsyncEngine = _component(request, "engine")
    return engine


def sessions_of(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = _component(request, "sessions")
    return sessions


def key_cache_of(request: Request) -> KeyCache:
    return _component(request, "key_cache")  # type: ignore[no-any-return]


def auth_throttle_of(request: Request) -> AuthThrottle:
    return _component(request, "auth_throttle")  # type: ignore[no-any-return]


def invalidation_of(request: Request) -> InvalidationBus:
    return _component(request, "invalidation")  # type: ignore[no-any-return]


def limiter_of(request: Request) -> Limiter:
    return _component(request, "limiter")  # type: ignore[no-any-return]


def metering_of(request: Request) -> Metering:
    return _component(request, "metering")  # type: ignore[no-any-return]


def telemetry_of(request: Request) -> Telemetry:
    return _component(request, "telemetry")  # type: ignore[no-any-return]


def routing_of(request: Request) -> Routing:
    return _component(request, "routing")  # type: ignore[no-any-return]


def upstream_guard_of(request: Request) -> TenantUpstreamGuard:
    return _component(request, "upstream_guard")  # type: ignore[no-any-return]


def secret_box_of(request: Request) -> SecretBox:
    return _component(request, "secret_box")  # type: ignore[no-any-return]


def objects_of(request: Request) -> ObjectIndex:
    return _component(request, "objects")  # type: ignore[no-any-return]


class Health:
    """What the probes ask: whether the process is shutting down, and whether its dependencies answer."""

    def __init__(
        self,
        shutting_down: Callable[[], bool],
        check_database: Callable[[], Awaitable[bool]],
        check_redis: Callable[[], Awaitable[bool | None]],
    ) -> None:
        self.shutting_down = shutting_down
        self.check_database = check_database
        self.check_redis = check_redis


def tenant_keys_of(request: Request) -> TenantKeys:
    return _component(request, "tenant_keys")  # type: ignore[no-any-return]


def health_of(request: Request) -> Health:
    health: Health = _component(request, "health")
    return health


SettingsDep = Annotated[Settings, Depends(settings_of)]
EngineDep = Annotated[AsyncEngine, Depends(engine_of)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(sessions_of)]
