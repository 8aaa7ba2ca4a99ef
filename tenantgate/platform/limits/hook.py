"""The limiter's place on the proxy path (an ExchangeHook; see platform/proxy/hooks.py).

``admit``: estimate the request's tokens (prompt + max output tokens), check and charge every limit of the key
and its tenant in one store call, add OpenAI's x-ratelimit-* headers, refuse with 429 (or 503 when Redis is down
and the limiter fails closed). ``settle`` (usage final) or else ``finish`` (the request ended early): release the
in-flight slot and correct the token estimate to the actual usage and charge the spend - in the background, so
no Redis round trip is added before the client's last byte.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tenantgate import tokens
from tenantgate.platform.limits.cost import CostEstimator, NoCostKnown
from tenantgate.platform.limits.responses import RateLimiterUnavailable, rate_limit_headers, refusal
from tenantgate.platform.proxy.exchange import Exchange
from tenantgate.resp import RespClient
from tenantgate.settings import Settings
from tenantgate.tenants.limits.checks import Check, Kind, Settlement, Verdict
from tenantgate.tenants.limits.guard import GuardedStore, LimiterUnavailable
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.policy import MICRO_USD, LimitPolicy, has_limits, month_bounds, needs_token_estimate
from tenantgate.tenants.limits.redis import RedisLimitStore
from tenantgate.tenants.principal import Principal

# Request bodies larger than this (bytes as sent) are tokenised in a thread: tiktoken releases the GIL, and a
# 100 kB prompt takes ~5 ms, too long to hold the event loop.
_INLINE_ESTIMATE_BYTES = 32 * 1024
_MAX_OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(slots=True)
class Reservation:
    store: RedisLimitStore | MemoryLimitStore
    checks: list[Check]
    lease: str
    tokens: int
    admitted_ms: int


class Limiter:
    name = "limits"

    def __init__(self, store: GuardedStore, policy: LimitPolicy, cost_estimator: CostEstimator | None = None) -> None:
        self.store = store
        self.policy = policy
        self.cost_estimator: CostEstimator = cost_estimator or NoCostKnown()

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter:
        silence = settings.limits_redis_timeout_ms / 1000
        primary = None
        if settings.redis_url:
            # Redis counts as down after ``silence`` without a byte while answers are owed (or a connect that
            # long): a busy event loop here delays replies but is not a Redis outage.
            client = RespClient.from_url(settings.redis_url, connect_timeout=silence, stall_timeout=silence)
            primary = RedisLimitStore(client, credit=settings.limits_local_credit)
        store = GuardedStore(
            primary,
            MemoryLimitStore(),
            fail_open=settings.limits_fail_mode == "open",
            retry_seconds=settings.limits_redis_retry_seconds,
        )
        policy = LimitPolicy(prefix=settings.redis_prefix, lease_ms=int(settings.limits_lease_seconds * 1000))
        return cls(store, policy)

    async def admit(self, exchange: Exchange) -> None:
        principal = exchange.ctx.principal
        if not has_limits(principal):
            return
        estimate = await _estimate(exchange) if needs_token_estimate(principal) else 0
        now = time.time()
        checks = self.policy.checks(principal, tokens=estimate, now=now)
        lease = os.urandom(9).hex() if any(c.kind is Kind.CONCURRENCY for c in checks) else ""
        try:
            verdict, store = await self.store.admit(checks, lease)
        except LimiterUnavailable:
            raise RateLimiterUnavailable(
                "The gateway cannot check rate limits right now. Please retry shortly.", headers={"retry-after": "1"}
            ) from None
        headers = rate_limit_headers(verdict.states)
        exchange.response_headers.extend(headers)
        if not verdict.admitted:
            # For telemetry's rejections-by-kind: which limit (and level) refused, e.g. "key_rpm".
            failed = [s.check for s in verdict.states if not s.passed]
            exchange.notes["limit_kind"] = ",".join(sorted({f"{c.scope}_{c.name}" for c in failed}))
            raise refusal(verdict.states, principal, exchange.model, headers, month_bounds(now)[1])
        exchange.notes[self.name] = Reservation(store, checks, lease, estimate, verdict.now_ms)

    async def settle(self, exchange: Exchange) -> None:
        self._close_out(exchange)

    def finish(self, exchange: Exchange) -> None:
        self._close_out(exchange)

    def _close_out(self, exchange: Exchange) -> None:
        reservation: Reservation | None = exchange.notes.pop(self.name, None)
        if reservation is None:
            return
        actual = _actual_tokens(exchange, reservation.tokens)
        settlement = Settlement(lease=reservation.lease, admitted_ms=reservation.admitted_ms)
        for check in reservation.checks:
            if check.kind is Kind.CONCURRENCY:
                settlement.release.append(check)
            elif check.name == "tpm" and actual != reservation.tokens:
                settlement.window_deltas.append((check, actual - reservation.tokens))
            elif check.name == "monthly_tokens" and actual != reservation.tokens:
                settlement.counter_deltas.append((check, actual - reservation.tokens))
            elif check.name == "monthly_budget" and (cost := self._cost_micro_usd(exchange)):
                settlement.counter_deltas.append((check, cost))
        self.store.settle_soon(settlement, reservation.store)

    def _cost_micro_usd(self, exchange: Exchange) -> int:
        if exchange.usage is None:
            return 0
        try:
            cost = self.cost_estimator.cost_usd(exchange)
        except Exception:
            return 0
        return int(cost * MICRO_USD) if isinstance(cost, Decimal) and cost > 0 else 0

    async def peek(self, principal: Principal) -> Verdict:
        """The current state of every limit of ``principal``, charging nothing."""
        checks = self.policy.checks(principal, tokens=0, now=time.time(), peek=True)
        verdict, _ = await self.store.admit(checks, "", dry=True)
        return verdict

    async def close(self) -> None:
        await self.store.close()


async def _estimate(exchange: Exchange) -> int:
    """Prompt tokens plus the most output tokens the request allows."""
    payload, model = exchange.payload, exchange.model
    if not payload:
        return 0
    if exchange.body_size > _INLINE_ESTIMATE_BYTES:
        prompt = await asyncio.to_thread(tokens.estimate_prompt_tokens, payload, model)
    else:
        prompt = tokens.estimate_prompt_tokens(payload, model)
    return prompt + max_output_tokens(payload)


def max_output_tokens(payload: dict[str, Any]) -> int:
    """The most output tokens a request allows: the largest cap it gives, times the answers it asks for (``n``, or
    ``best_of`` for completions, which generates that many); 0 when it gives no cap. The fields' types were
    checked at the door (proxy/references.py)."""
    caps = [v for f in _MAX_OUTPUT_FIELDS if isinstance(v := payload.get(f), int) and v > 0]
    if not caps:
        return 0
    answers = max(_count(payload.get("n")), _count(payload.get("best_of")))
    return max(caps) * answers


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _actual_tokens(exchange: Exchange, estimate: int) -> int:
    """Tokens the request really used: the upstream's (or the forwarder's estimated) usage; none if it failed."""
    if exchange.usage is not None:
        return exchange.usage.total_tokens
    if exchange.reached_upstream and 0 < exchange.status < 400 and not exchange.error_type:
        return estimate  # an answer without usage: keep the estimate
    return 0
