"""Limits of the Batch API: a batch holds its worst case from its create until it ends, not until its request ends.

At create (``Limiter.admit`` of an exchange with a ``BatchAdmission``) one store call checks and charges the
request's own limits (RPM, RPD, requests in flight: a create is one request) together with the batch's holds:
its prompt tokens against the tenant's batch queue of each model it names (OpenAI's enqueued-token limit), and its
worst case (every line's prompt plus the most output it allows, at batch prices) against the month's quota and
budget. The holds outlive the request: once the batch is created they are written beside it in the object index
(``BatchHold.as_state``) and released when it ends, completed, failed, expired or cancelled, while the usage of its
lines is charged (``Limiter.settle_batch``). A create that fails releases them at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tenantgate.core.principal import Principal
from tenantgate.platform.errors import GatewayError
from tenantgate.platform.limits.responses import RateLimited
from tenantgate.tenants.limits.checks import Check, CheckState, Kind
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.redis import RedisLimitStore


@dataclass(slots=True)
class BatchHold:
    """What a batch create holds, in the store that admitted it (released there if the batch is not created)."""

    store: RedisLimitStore | MemoryLimitStore
    checks: list[Check]

    def as_state(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "key": c.key, "period_ms": c.period_ms, "amount": c.amount} for c in self.checks]


def holds_of(state: list[dict[str, Any]]) -> list[tuple[Check, int]]:
    """The holds written beside a batch, as counter checks and the amount each holds."""
    holds = []
    for hold in state:
        name, key, period, amount = hold.get("name"), hold.get("key"), hold.get("period_ms"), hold.get("amount")
        if isinstance(name, str) and isinstance(key, str) and isinstance(period, int) and isinstance(amount, int):
            holds.append((Check(name, "tenant", Kind.COUNTER, key, 0, 0, period), amount))
    return holds


@dataclass(slots=True)
class BatchCharge:
    """What a finished batch used, charged to the month of its end."""

    tokens: int = 0
    nano_usd: int = 0
    lines: int = 0
    models: dict[str, int] = field(default_factory=dict)


def queue_refusal(
    state: CheckState, principal: Principal, model: str, headers: dict[str, str], retry_seconds: float
) -> GatewayError:
    """OpenAI's words for a full batch queue; a batch that can never fit is not worth retrying."""
    check = state.check
    queued = state.used
    if check.amount > check.limit:
        headers["x-should-retry"] = "false"
    else:
        headers["retry-after"] = str(max(1, math.ceil(retry_seconds)))
    message = (
        f"Enqueued token limit reached for {model[:128]} in tenant {principal.tenant_name} ({principal.tenant_id}). "
        f"Limit: {check.limit} enqueued tokens, Enqueued: {queued}, Requested: {check.amount}. Please try submitting "
        "your batch again once batches in flight have finished."
    )
    error = RateLimited(message, type_="tokens", headers=headers)
    error.code = "token_limit_exceeded"
    return error
