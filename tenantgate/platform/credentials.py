"""Resolving a presented tenant key, with failed attempts throttled (tenants/auth_throttle.py).

The one path by which a tenant key becomes a principal, for the proxy's auth middleware and the usage API alike,
so that guessing is limited wherever a key is accepted.
"""

from __future__ import annotations

import time

from starlette.types import Scope

from tenantgate.core.principal import Principal
from tenantgate.platform.errors import TooManyFailedAttempts
from tenantgate.tenants.auth_throttle import AuthThrottle, source_of
from tenantgate.tenants.cache import KeyCache
from tenantgate.tenants.keys import hash_key


class TenantKeys:
    """Presented tenant keys to principals: the key cache, with failed attempts counted by the auth throttle."""

    def __init__(self, key_cache: KeyCache, throttle: AuthThrottle, secret_key: bytes) -> None:
        self._key_cache = key_cache
        self._throttle = throttle
        self._secret_key = secret_key

    async def resolve(self, scope: Scope, key: str) -> Principal | None:
        """The key's principal; None if unknown or expired (a counted failure); TooManyFailedAttempts if this source
        (or everybody) failed too often lately and the key is not one this process resolved recently."""
        key_hash = hash_key(self._secret_key, key)
        principal = self._key_cache.known(key_hash)
        if principal is None:
            source = source_of(scope.get("client"))
            # A key this process found valid lately is looked up even from a throttled source: someone else's
            # guessing from the same address (everybody behind one ingress) must not lock a tenant out once its
            # key falls out of the cache.
            throttle = self._throttle
            if not throttle.vouched("tenant", key_hash) and (wait := throttle.permit_lookup("tenant", source)):
                raise throttled(wait)
            principal = await self._key_cache.get(key_hash)
            if principal is None or _expired(principal):
                # Counted, but answered 401 even when this failure reaches the limit: the key was checked, and a
                # 429 would have the SDK sleep through its retry-after and try the dead key again.
                await throttle.failed("tenant", source, "invalid")
                return None
            throttle.vouch("tenant", key_hash)
        return None if _expired(principal) else principal

    def cached(self, key: str) -> Principal | None:
        """The key's principal if this process resolved it recently and it has not expired; never a lookup, never a
        counted failure (a miss is the caller's cue to take the path that ``resolve``s)."""
        principal = self._key_cache.known(hash_key(self._secret_key, key))
        return None if principal is None or _expired(principal) else principal


def _expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= time.time()


def throttled(wait: int) -> TooManyFailedAttempts:
    return TooManyFailedAttempts(
        f"Too many failed authentications from your address. Try again in {wait}s.",
        headers={"retry-after": str(wait), "retry-after-ms": str(wait * 1000)},
    )
