"""Which checks a principal's request gets, and how monthly counters follow the UTC calendar."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.limits.checks import DAY_MS, Kind
from tenantgate.tenants.limits.policy import LimitPolicy, month_bounds

POLICY = LimitPolicy(prefix="tg", lease_ms=900_000)


def _principal(key: Limits, tenant: Limits) -> Principal:
    return Principal("key_a", "tg-a", "a", "ten_a", "acme", True, None, key, tenant, None)


def _ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_month_bounds_roll_over_the_year() -> None:
    start, following = month_bounds(_ts(2026, 12, 15, 13, 0))
    assert start == datetime(2026, 12, 1, tzinfo=UTC) and following == datetime(2027, 1, 1, tzinfo=UTC)


def test_monthly_counters_start_afresh_with_the_utc_month() -> None:
    principal = _principal(Limits(), Limits(monthly_token_quota=1000, monthly_budget_usd=Decimal("2.5")))
    november = POLICY.checks(principal, tokens=10, now=_ts(2026, 11, 30, 23, 59, 59))
    december = POLICY.checks(principal, tokens=10, now=_ts(2026, 12, 1, 0, 0, 0))
    assert [c.key for c in november] == ["tg:lim:{ten_a}:tenant:tokens:2026-11", "tg:lim:{ten_a}:tenant:nusd:2026-11"]
    assert [c.key for c in december] == ["tg:lim:{ten_a}:tenant:tokens:2026-12", "tg:lim:{ten_a}:tenant:nusd:2026-12"]
    assert november[1].limit == 2_500_000_000 and november[1].kind is Kind.COUNTER  # nano-USD
    # Kept a week past the month's end, so a late settlement still lands in its month.
    assert november[0].period_ms == 1000 + 7 * DAY_MS


def test_key_and_tenant_checks_share_one_hash_tag_and_peeks_ask_for_nothing() -> None:
    principal = _principal(Limits(rpm=5, tpm=100, rpd=50, max_concurrency=2), Limits(rpm=50, max_concurrency=20))
    checks = POLICY.checks(principal, tokens=42, now=_ts(2026, 11, 2))
    assert [(c.scope, c.name, c.amount) for c in checks] == [
        ("key", "rpm", 1),
        ("key", "tpm", 42),
        ("key", "rpd", 1),
        ("key", "concurrency", 1),
        ("tenant", "rpm", 1),
        ("tenant", "concurrency", 1),
    ]
    assert all(key.startswith("tg:lim:{ten_a}:") for c in checks for key in c.storage_keys)
    assert all(c.amount == 0 for c in POLICY.checks(principal, tokens=42, now=_ts(2026, 11, 2), peek=True))
