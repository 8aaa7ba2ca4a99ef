"""The limit fields of plans, tenants and keys as the admin API, the CLI and ``tenantgate apply`` accept them.

One definition, so a limit validated in a YAML file is validated exactly as the same limit sent to the admin API.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, PlainSerializer, StringConstraints

_INT32 = 2**31 - 1

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=0, le=_INT32)]
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=6),
    PlainSerializer(float, return_type=float, when_used="json"),
]


ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ModelList = Annotated[list[ModelName], Field(max_length=1000), AfterValidator(lambda v: sorted(set(v)))]


class RateLimits(BaseModel):
    rpm: Count | None = Field(default=None, description="Requests per minute")
    tpm: Count | None = Field(default=None, description="Tokens (prompt + completion) per minute")
    rpd: Count | None = Field(default=None, description="Requests per day")
    max_concurrency: Count | None = Field(default=None, description="Requests in flight at once")
    allowed_models: ModelList | None = Field(default=None, description="Models that may be used; null = all")


class Quotas(BaseModel):
    monthly_token_quota: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        default=None, description="Tokens per calendar month (UTC)"
    )
    monthly_budget_usd: Money | None = Field(default=None, description="Spend per calendar month (UTC), in USD")
    batch_queue_tokens: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        default=None, description="Prompt tokens of batches in flight, per model (OpenAI's batch queue limit)"
    )
    fair_share_weight: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None,
        description="Share of a saturated gateway worker against other tenants' (requests per turn); null = 1",
    )
