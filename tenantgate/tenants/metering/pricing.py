"""What an exchange costs: the versioned price table in the repository, overridable per plan and per tenant.

``PriceBook.cost(model, usage)`` is the one function that turns tokens into money; metering stores its result
(and the price version) on every event, and the monthly-budget limit calls it to know what a request spent.

Price files live in ``prices/<effective date>.yaml``; an event is priced with the newest version in effect at its
time (the oldest version covers anything before it). Overrides (table ``price_overrides``) replace a model's price
for everyone (neither tenant nor plan), one plan or one tenant from their ``effective_from`` on. Model names match
by longest prefix, so a table entry ``gpt-4o-mini`` prices ``gpt-4o-mini-2024-07-18``; when overrides and the table
match equally long prefixes, the most specific one wins (tenant, then plan, then global, then the table). Within
one scope and model, the override with the latest ``effective_from`` that has begun applies (ties: the newer id).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml

from tenantgate.core.exchange import Usage

PRICES_DIR = Path(__file__).parent / "prices"
_NANO_PER_MILLION = Decimal(1000)  # USD per 1M tokens -> nano-USD per token
_ONE = Decimal(1)
NANOS_PER_USD = 1_000_000_000
_GLOBAL = ("global", "")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> Price:
        def dec(name: str) -> Decimal | None:
            value = fields.get(name)
            if value is None:
                return None
            parsed = Decimal(str(value))
            if not parsed.is_finite() or parsed < 0:
                raise ValueError(f"price {name}={value!r} must be a non-negative number")
            return parsed

        input_price, output_price = dec("input"), dec("output")
        if input_price is None or output_price is None:
            raise ValueError("a price needs at least input and output")
        return cls(input_price, output_price, dec("cached_input"), dec("input_audio"), dec("output_audio"))


@dataclass(frozen=True, slots=True)
class Cost:
    input_nusd: int
    cached_input_nusd: int
    output_nusd: int
    version: str | None
    """The price version used; None when no price was known for the model (the cost is then zero)."""

    @property
    def total_nusd(self) -> int:
        return self.input_nusd + self.cached_input_nusd + self.output_nusd

    @property
    def usd(self) -> Decimal:
        return Decimal(self.total_nusd) / NANOS_PER_USD


def _nanos(tokens: int, price_per_million: Decimal) -> int:
    if tokens <= 0:
        return 0
    return int((tokens * price_per_million * _NANO_PER_MILLION).quantize(_ONE, rounding=ROUND_HALF_UP))


def price_usage(price: Price, usage: Usage, version: str | None) -> Cost:
    # Cached and audio input tokens are part of input_tokens (as in OpenAI's usage), audio output part of output.
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    input_audio = min(usage.input_audio_tokens, usage.input_tokens - cached) if price.input_audio is not None else 0
    output_audio = min(usage.output_audio_tokens, usage.output_tokens) if price.output_audio is not None else 0
    text_input = usage.input_tokens - cached - input_audio
    input_nusd = _nanos(text_input, price.input) + _nanos(input_audio, price.input_audio or price.input)
    cached_nusd = _nanos(cached, price.cached_input if price.cached_input is not None else price.input)
    output_nusd = _nanos(usage.output_tokens - output_audio, price.output) + _nanos(
        output_audio, price.output_audio or price.output
    )
    return Cost(input_nusd, cached_nusd, output_nusd, version)


@dataclass(frozen=True, slots=True)
class PriceTable:
    version: str
    effective_from: float
    prices: Mapping[str, Price]

    @classmethod
    def from_file(cls, path: Path) -> PriceTable:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            raise ValueError(f"{path.name}: expected a mapping with 'version', 'effective_from' and 'models'")
        effective = raw.get("effective_from", path.stem)
        day = effective if isinstance(effective, date) else date.fromisoformat(str(effective))
        try:
            prices = {str(model): Price.parse(fields) for model, fields in raw["models"].items()}
        except (ValueError, ArithmeticError, AttributeError) as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        return cls(
            version=str(raw.get("version", path.stem)),
            effective_from=datetime(day.year, day.month, day.day).replace(tzinfo=UTC).timestamp(),
            prices=prices,
        )


@dataclass(frozen=True, slots=True)
class PriceOverride:
    id: str
    model: str
    price: Price
    effective_from: float
    tenant_id: str | None = None
    plan_id: str | None = None


def _longest_prefix(model: str, names: Iterable[str]) -> str | None:
    best: str | None = None
    for name in names:
        if model.startswith(name) and (best is None or len(name) > len(best)):
            best = name
    return best


class PriceBook:
    def __init__(
        self,
        tables: Iterable[PriceTable],
        overrides: Iterable[PriceOverride] = (),
        tenant_plans: Mapping[str, str] | None = None,
    ) -> None:
        self._tables = sorted(tables, key=lambda t: t.effective_from)
        if not self._tables:
            raise ValueError("a price book needs at least one price table")
        self._starts = [t.effective_from for t in self._tables]
        # (version, model) -> longest matching table entry; model names are few, lookups are per event.
        self._table_names: dict[tuple[str, str], str | None] = {}
        self.set_overrides(overrides, tenant_plans or {})

    @classmethod
    def load(cls, directory: Path = PRICES_DIR) -> PriceBook:
        return cls(PriceTable.from_file(path) for path in sorted(directory.glob("*.yaml")))

    @property
    def current_version(self) -> str:
        return self.table_at(time.time()).version

    def set_overrides(self, overrides: Iterable[PriceOverride], tenant_plans: Mapping[str, str]) -> None:
        by_scope: dict[tuple[str, str], list[PriceOverride]] = {}
        for override in overrides:
            if override.tenant_id:
                scope = ("tenant", override.tenant_id)
            elif override.plan_id:
                scope = ("plan", override.plan_id)
            else:
                scope = _GLOBAL
            by_scope.setdefault(scope, []).append(override)
        for entries in by_scope.values():
            # Ids are time-ordered: of two overrides starting at the same moment, the one created last wins.
            entries.sort(key=lambda o: (o.effective_from, o.id))
        # One assignment, so a writer thread pricing a batch never sees new overrides with old plan memberships.
        self._scopes = (by_scope, dict(tenant_plans))

    def table_at(self, at: float) -> PriceTable:
        return self._tables[max(0, bisect_right(self._starts, at) - 1)]

    def price_for(self, model: str, *, tenant_id: str | None = None, at: float | None = None) -> tuple[Price, str]:
        """The price of ``model`` for this tenant at time ``at`` and its version; KeyError when none is known."""
        at = time.time() if at is None else at
        table = self.table_at(at)
        best: tuple[int, int, Price, str] | None = None  # (prefix length, specificity, price, version)
        name = self._table_names.get((table.version, model), "")
        if name == "":
            if len(self._table_names) >= 10_000:  # model names come from requests: keep the memo bounded
                self._table_names.clear()
            name = self._table_names[(table.version, model)] = _longest_prefix(model, table.prices)
        if name is not None:
            best = (len(name), 0, table.prices[name], table.version)
        overrides, tenant_plans = self._scopes
        scopes = [(1, _GLOBAL)]
        if tenant_id is not None:
            plan_id = tenant_plans.get(tenant_id)
            if plan_id is not None:
                scopes.append((2, ("plan", plan_id)))
            scopes.append((3, ("tenant", tenant_id)))
        for specificity, scope in scopes:
            if scope not in overrides:
                continue
            effective = [o for o in overrides[scope] if o.effective_from <= at]
            name = _longest_prefix(model, {o.model for o in effective})
            if name is None:
                continue
            override = [o for o in effective if o.model == name][-1]
            candidate = (len(name), specificity, override.price, f"{table.version}+{override.id}")
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        if best is None:
            raise KeyError(model)
        return best[2], best[3]

    def cost(
        self,
        model: str | None,
        usage: Usage | None,
        *,
        tenant_id: str | None = None,
        at: float | None = None,
        served_model: str | None = None,
    ) -> Cost:
        """What ``usage`` costs. ``served_model`` (the model the upstream answered with) is priced first, then the
        requested ``model``; a model without any price costs zero with ``version`` None."""
        if usage is None:
            return Cost(0, 0, 0, None)
        for name in (served_model, model):
            if not name:
                continue
            try:
                price, version = self.price_for(name, tenant_id=tenant_id, at=at)
            except KeyError:
                continue
            return price_usage(price, usage, version)
        return Cost(0, 0, 0, None)
