"""The JSON view of a principal's limits and what is left of them (GET /v1/me, GET /admin/keys/{id}/limits)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from tenantgate.core.principal import Principal
from tenantgate.platform.limits.responses import format_duration
from tenantgate.tenants.limits.checks import CheckState, Verdict
from tenantgate.tenants.limits.policy import NANO_USD, month_bounds

_WINDOWS = (("requests_per_minute", "rpm"), ("tokens_per_minute", "tpm"), ("requests_per_day", "rpd"))


def _window(state: CheckState | None) -> dict[str, Any]:
    if state is None:
        return {"limit": None, "used": None, "remaining": None, "reset": None, "reset_ms": None}
    return {
        "limit": state.check.limit,
        "used": state.used,
        "remaining": state.remaining,
        "reset": format_duration(state.reset_ms),
        "reset_ms": state.reset_ms,
    }


def _level(states: dict[str, CheckState]) -> dict[str, Any]:
    level = {field: _window(states.get(name)) for field, name in _WINDOWS}
    concurrency = states.get("concurrency")
    level["concurrent_requests"] = {
        "limit": concurrency.check.limit if concurrency else None,
        "in_flight": concurrency.used if concurrency else None,
        "remaining": concurrency.remaining if concurrency else None,
    }
    return level


def limits_view(principal: Principal, verdict: Verdict) -> dict[str, Any]:
    by_scope: dict[str, dict[str, CheckState]] = {"key": {}, "tenant": {}}
    for state in verdict.states:
        by_scope[state.check.scope][state.check.name] = state
    tenant = _level(by_scope["tenant"])
    resets_at = month_bounds(time.time())[1].strftime("%Y-%m-%dT%H:%M:%SZ")
    tokens = by_scope["tenant"].get("monthly_tokens")
    # "used"/"spent" is what finished requests used; "reserved" what requests in flight hold (their worst case,
    # settled to what they use when they end); "remaining" is what is left for new requests.
    tenant["monthly_tokens"] = {
        "limit": tokens.check.limit if tokens else None,
        "used": tokens.used - tokens.reserved if tokens else None,
        "reserved": tokens.reserved if tokens else None,
        "remaining": tokens.remaining if tokens else None,
        "resets_at": resets_at,
    }
    budget = by_scope["tenant"].get("monthly_budget")
    tenant["monthly_budget_usd"] = {
        "limit": _usd(budget.check.limit) if budget else None,
        "spent": _usd(budget.used - budget.reserved) if budget else None,
        "reserved": _usd(budget.reserved) if budget else None,
        "remaining": _usd(budget.remaining) if budget else None,
        "resets_at": resets_at,
    }
    return {
        "object": "limits",
        "key": {"id": principal.key_id, "name": principal.key_name, "prefix": principal.key_prefix},
        "tenant": {"id": principal.tenant_id, "name": principal.tenant_name},
        "limits": {"key": _level(by_scope["key"]), "tenant": tenant},
    }


def _usd(nanos: int) -> float:
    return float(Decimal(nanos) / NANO_USD)
