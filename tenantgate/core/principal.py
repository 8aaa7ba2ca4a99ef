"""What a resolved API key may do: the frozen, cacheable view of a key, its tenant and its plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import SecretStr


@dataclass(frozen=True, slots=True)
class Limits:
    """One level of limits (a key's or a tenant's). ``None`` means no limit at this level."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    max_concurrency: int | None = None
    monthly_token_quota: int | None = None
    monthly_budget_usd: Decimal | None = None
    batch_queue_tokens: int | None = None
    """Prompt tokens of batches in flight per model (tenants only)."""
    month_version: int = 0
    """When the tenant's limits last changed (ms; tenants only): a month counter seeded before is seeded again from
    the ledger, since while the tenant had no quota or budget its spend reached no counter."""


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    key_prefix: str
    key_name: str
    tenant_id: str
    tenant_name: str
    tenant_active: bool
    expires_at: float | None
    key_limits: Limits
    tenant_limits: Limits
    # None = every model the platform routes; otherwise the intersection of plan, tenant and key lists.
    allowed_models: frozenset[str] | None
    # The tenant's own upstream credentials (BYOK) by upstream name; SecretStr keeps them out of reprs.
    upstream_keys: Mapping[str, SecretStr] = field(default_factory=dict)
    # The tenant's own endpoints (BYOK with a base URL) by upstream name, built once when the key is loaded, so the
    # proxy path only swaps targets and never reads the database: the platform's ``Upstream`` objects (typed loosely
    # here, since the core knows nothing of the platform).
    own_upstreams: Mapping[str, Any] = field(default_factory=dict)
    # The tenant's share of a saturated worker against other tenants' (platform/workslots.py): its plan's.
    fair_share_weight: int = 1

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models
