"""Throttling of failed admin authentication, per client IP, with slowapi's limiter.

Only failures are counted (a correct token never uses up the allowance), but once an address has failed too often
every attempt from it is refused with 429 before its token is even looked at, so guessing cannot continue. The
storage is slowapi's in-process memory storage on purpose: slowapi drives the synchronous ``limits`` API, and a
Redis storage would block the event loop on every check. Each process therefore counts its own failures.
Failures are also counted as the OpenTelemetry counter ``tenantgate.admin.auth.failures`` (attribute ``reason``)
and logged with the client address, never with the presented token.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from opentelemetry import metrics
from slowapi import Limiter
from slowapi.util import get_remote_address
from starlette.requests import Request

from tenantgate.platform.errors import GatewayError

log = logging.getLogger("tenantgate.admin")

_failures = metrics.get_meter("tenantgate").create_counter(
    "tenantgate.admin.auth.failures",
    unit="{attempt}",
    description="Failed admin API authentications (reason: missing, invalid, throttled)",
)


class TooManyFailedAttempts(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class AdminAuthThrottle:
    def __init__(self, limit: str) -> None:
        self._limiter = Limiter(key_func=get_remote_address, storage_uri="memory://", strategy="moving-window")
        self._limit = parse(limit)
        self.failures: dict[str, int] = {"missing": 0, "invalid": 0, "throttled": 0}

    @staticmethod
    def _client(request: Request) -> str:
        return str(get_remote_address(request))

    def check(self, request: Request) -> None:
        """Refuse a client that has failed too often, before its token is looked at."""
        client = self._client(request)
        strategy = self._limiter.limiter
        if strategy.test(self._limit, "admin-auth-failures", client):
            return
        reset_at, _ = strategy.get_window_stats(self._limit, "admin-auth-failures", client)
        retry_after = max(1, math.ceil(reset_at - time.time()))
        self._count("throttled", client)
        raise TooManyFailedAttempts(
            f"Too many failed admin authentications from this address. Try again in {retry_after}s.",
            headers={"retry-after": str(retry_after)},
        )

    def failed(self, request: Request, reason: str) -> None:
        client = self._client(request)
        self._limiter.limiter.hit(self._limit, "admin-auth-failures", client)
        self._count(reason, client)

    def _count(self, reason: str, client: str) -> None:
        self.failures[reason] += 1
        _failures.add(1, {"reason": reason})
        log.warning("admin authentication failed (%s) from %s", reason, client)
