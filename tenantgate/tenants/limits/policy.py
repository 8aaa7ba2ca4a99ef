"""Which checks a request of a given principal must pass, and where their state is kept.

Per key and per tenant: requests per minute and per day, tokens per minute, requests in flight. Per tenant also
the month's tokens and the month's spend (calendar months in UTC, like a bill). A tenant's limits cap the sum of
all its keys. All keys of a tenant share the hash tag ``{tenant_id}`` so one script can touch them together.

Spend is counted in whole nano-USD, the unit the ledger stores costs in, so a counter seeded from the ledger and
one charged request by request agree exactly: a cheap request (an embedding of 40 tokens costs 800 nano-USD) is
never rounded away. Redis's Lua compares numbers as doubles, exact up to 2^53 nano-USD (about $9 million a month).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.limits.checks import DAY_MS, MINUTE_MS, Check, Kind

NANO_USD = Decimal(1_000_000_000)
# Month counters outlive their month by a week so a late settlement still finds them.
_MONTH_GRACE_MS = 7 * DAY_MS
# A batch queue counter is kept this long after it last changed (a batch runs for at most a day or two); once gone,
# it is seeded again from the batches in flight.
BATCH_QUEUE_KEEP_MS = 7 * DAY_MS


def month_bounds(now: float) -> tuple[datetime, datetime]:
    """Start of this UTC month and of the next one."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    return start, start.replace(month=start.month + 1)


@dataclass(frozen=True, slots=True)
class _Month:
    label: str
    start: float
    end: float


_current_month = _Month("", 0.0, 0.0)


def _month(now: float) -> _Month:
    """The month's key label and bounds, recomputed only when the month changes (this runs per request)."""
    global _current_month
    month = _current_month
    if not month.start <= now < month.end:
        start, following = month_bounds(now)
        month = _current_month = _Month(start.strftime("%Y-%m"), start.timestamp(), following.timestamp())
    return month


def needs_token_estimate(principal: Principal) -> bool:
    key, tenant = principal.key_limits, principal.tenant_limits
    return (
        key.tpm is not None
        or tenant.tpm is not None
        or tenant.monthly_token_quota is not None
        or tenant.monthly_budget_usd is not None
    )


def has_limits(principal: Principal) -> bool:
    return _any(principal.key_limits) or _any(principal.tenant_limits)


def _any(limits: Limits) -> bool:
    return any(
        value is not None
        for value in (
            limits.rpm,
            limits.tpm,
            limits.rpd,
            limits.max_concurrency,
            limits.monthly_token_quota,
            limits.monthly_budget_usd,
        )
    )


def month_start(now: float) -> float:
    """The start of ``now``'s UTC month (what the month counters count from)."""
    return _month(now).start


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    prefix: str
    lease_ms: int

    def checks(
        self,
        principal: Principal,
        *,
        tokens: int,
        now: float,
        peek: bool = False,
        reserve_tokens: int | None = None,
        reserve_nano_usd: int = 0,
    ) -> list[Check]:
        """The checks of one request: ``tokens`` for TPM (OpenAI's estimate: prompt + the output cap if given);
        ``reserve_tokens`` (default ``tokens``) and ``reserve_nano_usd``, its worst case, held against the month's
        quota and budget until it is settled. ``peek``: amounts 0, only to read the state."""
        one = 0 if peek else 1
        reserve = tokens if reserve_tokens is None else reserve_tokens
        tokens, reserve, spend = (0, 0, 0) if peek else (tokens, reserve, reserve_nano_usd)
        tag = f"{self.prefix}:lim:{{{principal.tenant_id}}}"
        checks: list[Check] = []
        for scope, limits, base in (
            ("key", principal.key_limits, f"{tag}:{principal.key_id}"),
            ("tenant", principal.tenant_limits, f"{tag}:tenant"),
        ):
            if limits.rpm is not None:
                checks.append(Check("rpm", scope, Kind.WINDOW, f"{base}:rpm", limits.rpm, one, MINUTE_MS))
            if limits.tpm is not None:
                checks.append(Check("tpm", scope, Kind.WINDOW, f"{base}:tpm", limits.tpm, tokens, MINUTE_MS))
            if limits.rpd is not None:
                checks.append(Check("rpd", scope, Kind.WINDOW, f"{base}:rpd", limits.rpd, one, DAY_MS))
            if limits.max_concurrency is not None:
                checks.append(
                    Check(
                        "concurrency",
                        scope,
                        Kind.CONCURRENCY,
                        f"{base}:inflight",
                        limits.max_concurrency,
                        one,
                        self.lease_ms,
                    )
                )
        tenant = principal.tenant_limits
        version = tenant.month_version
        if tenant.monthly_token_quota is not None:
            quota = tenant.monthly_token_quota
            checks.append(self.month_counter(principal.tenant_id, "monthly_tokens", now, quota, reserve, version))
        if tenant.monthly_budget_usd is not None:
            limit = int(tenant.monthly_budget_usd * NANO_USD)
            checks.append(self.month_counter(principal.tenant_id, "monthly_budget", now, limit, spend, version))
        return checks

    def month_counter(
        self, tenant_id: str, name: str, now: float, limit: int = 0, amount: int = 0, version: int = 0
    ) -> Check:
        """The month's token (``monthly_tokens``) or spend (``monthly_budget``) counter of a tenant at ``now``;
        ``version``: the tenant's limits' (a counter seeded before they last changed is seeded again)."""
        month = _month(now)
        keep_ms = int((month.end - now) * 1000) + _MONTH_GRACE_MS
        # "nusd": spend in nano-USD (counters of builds that counted micro-USD were named "spend"; never mixed).
        what = "tokens" if name == "monthly_tokens" else "nusd"
        key = f"{self.prefix}:lim:{{{tenant_id}}}:tenant:{what}:{month.label}"
        return Check(name, "tenant", Kind.COUNTER, key, limit, amount, keep_ms, version)

    def batch_queue(self, principal: Principal, model: str, tokens: int) -> Check | None:
        """The tenant's counter of prompt tokens enqueued in batches for ``model``, or None without a queue limit."""
        limit = principal.tenant_limits.batch_queue_tokens
        if limit is None:
            return None
        # Model names are the caller's strings: the key carries a digest of the name, of bounded length.
        digest = hashlib.sha256(model.encode()).hexdigest()[:24]
        key = f"{self.prefix}:lim:{{{principal.tenant_id}}}:tenant:batchq:{digest}"
        return Check("batch_queue", "tenant", Kind.COUNTER, key, limit, tokens, BATCH_QUEUE_KEEP_MS)
