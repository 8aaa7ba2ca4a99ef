"""Resolving a presented tenant key, with failed attempts throttled (tenants/auth_throttle.py).

The one path by which a tenant key becomes a principal, for the proxy's auth middleware and the usage API alike,
so that guessing is limited wherever a key is accepted.
"""

from __future__ import annotations

import time

from starlette.types import Scope

from tenantgate.core.principal import Principal
from tenantgate.platform.errors import TooManyFailedAttempts
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants.auth_throttle import source_of
from tenantgate.tenants.keys import hash_key


async def resolve_tenant_key(runtime: Runtime, scope: Scope, key: str) -> Principal | None:
    """The key's principal; None if unknown or expired (a counted failure); TooManyFailedAttempts if this source
    (or everybody) failed too often lately and the key is not one this process resolved recently."""
    key_hash = hash_key(runtime.settings.secret_key_bytes, key)
    key_cache = runtime.key_cache
    principal = key_cache.known(key_hash)
    if principal is None:
        throttle = runtime.auth_throttle
        source = source_of(scope.get("client"))
        if wait := throttle.permit_lookup("tenant", source):
            raise throttled(wait)
        principal = await key_cache.get(key_hash)
        if principal is None or _expired(principal):
            if wait := await throttle.failed("tenant", source, "invalid"):
                raise throttled(wait)
            return None
    return None if _expired(principal) else principal


def _expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= time.time()


def throttled(wait: int) -> TooManyFailedAttempts:
    return TooManyFailedAttempts(
        f"Too many failed authentications from your address. Try again in {wait}s.",
        headers={"retry-after": str(wait), "retry-after-ms": str(wait * 1000)},
    )
