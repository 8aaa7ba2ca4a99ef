"""What an exchange costs: the versioned price table in the repository, overridable per plan and per tenant.

``PriceBook.cost(model, usage, measure=...)`` is the one function that turns usage into money; metering stores its
result (and the price version) on every event, and the monthly-budget limit calls it to know what a request spent.

Price files live in ``prices/<effective date>.yaml`` (price_table.py says what they can say); an event is priced
with the newest version in effect at its time (the oldest version covers anything before it). Overrides (table
``price_overrides``) replace a model's price for everyone (neither tenant nor plan), one plan or one tenant from
their ``effective_from`` on.

A price matches a model by its exact name, or by the name of which the model is a dated snapshot
(``gpt-4o-mini`` prices ``gpt-4o-mini-2024-07-18``), never by any other prefix: ``o3`` does not price ``o3-pro``,
nor ``gpt-4o-mini`` ``gpt-4o-mini-transcribe``. An exact match beats a snapshot match: ``gpt-4o-2024-05-13`` has its
own price, and a snapshot the table lists without a price is unpriced, not priced as its base. Between equal matches
the most specific price wins (tenant, then plan, then global override, then the table). Within one scope and model,
the override with the latest ``effective_from`` that has begun applies (ties: the newer id).

A billable exchange no price covers is *unpriced*: its cost carries the reason and no version, and it is never
presented as a price of 0 (a free model, such as moderation, has a price of 0 and a version).
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from tenantgate.core.exchange import NO_TOOL_CALLS, ToolCalls, Usage
from tenantgate.tenants.metering.price_table import Price, PriceTable

__all__ = ["NANOS_PER_USD", "Cost", "Measure", "Price", "PriceBook", "PriceOverride", "PriceTable", "snapshot_of"]

PRICES_DIR = Path(__file__).parent / "prices"
NANOS_PER_USD = 1_000_000_000
_NANOS = Decimal(NANOS_PER_USD)
_NANO_PER_MILLION = Decimal(1000)  # USD per 1M tokens -> nano-USD per token
_ONE = Decimal(1)
_GLOBAL = ("global", "")
_DATED = re.compile(r"(.+)-([0-9]{4})-([0-9]{2})-([0-9]{2})")  # ASCII digits: \d matches any script's digits

# Why a billable exchange has no price (stored in the event's ``unpriced`` column).
UNPRICED_MODEL = "model"
"""No price for the model, in the table or an override."""
UNPRICED_TIER = "tier"
"""The model has no price for the service tier the request asked for (e.g. ``priority``, or flex where none)."""
UNPRICED_OPTION = "option"
"""No price for the image quality and size the request asked for."""
UNPRICED_USAGE = "usage"
"""The price needs a count the upstream did not report (audio seconds, tokens of an image or speech model)."""
UNPRICED_ENDPOINT = "endpoint"
"""The model's price is for another kind of request (a per-image price, asked for a chat completion)."""

UNPRICED_TOOL = "tool"
"""The answer used a hosted tool (web search, file search, code interpreter) the price table has no price for."""

UNKNOWN_OPTION = "(unknown)"
"""An image option an event does not record (spooled by a version before options were recorded)."""

# The unit each family is sold by, where it has one; the token prices of these families need the upstream's count.
UNIT_OF_CATEGORY = {"images": "image", "audio_speeches": "character", "audio_transcriptions": "second"}
_STANDARD_TIERS = (None, "auto", "default")


@dataclass(frozen=True, slots=True)
class Measure:
    """What pricing needs to know about an exchange beyond its tokens."""

    category: str = "completions"
    quantity: int = 0
    """Images, characters or seconds, by category (events.py)."""
    usage_reported: bool = True
    """Whether the tokens came from the upstream (not an estimate)."""
    service_tier: str | None = None
    image_size: str | None = None
    image_quality: str | None = None
    tools: ToolCalls = NO_TOOL_CALLS
    """Hosted tools the answer used, priced per call or session beside the tokens."""


TOKENS = Measure()
# Each tool's count (ToolCalls) and its name in the price table's ``tools``.
TOOL_PRICES = (
    ("web_search_calls", "web_search"),
    ("file_search_calls", "file_search"),
    ("code_interpreter_sessions", "code_interpreter"),
)


@dataclass(frozen=True, slots=True)
class Cost:
    input_nusd: int = 0
    cached_input_nusd: int = 0
    output_nusd: int = 0
    unit_nusd: int = 0
    """Images, characters or seconds at ``unit_price``."""
    web_search_nusd: int = 0
    file_search_nusd: int = 0
    code_interpreter_nusd: int = 0
    version: str | None = None
    """The price version used; None when nothing was priced."""
    unpriced: str | None = None
    """Why a billable exchange has no price (``UNPRICED_*``); None when it was priced, or is not billable."""
    unit_price: Decimal | None = None
    """USD per image, character or second, when that is how it was priced."""

    @property
    def total_nusd(self) -> int:
        return (
            self.input_nusd
            + self.cached_input_nusd
            + self.output_nusd
            + self.unit_nusd
            + self.web_search_nusd
            + self.file_search_nusd
            + self.code_interpreter_nusd
        )

    @property
    def usd(self) -> Decimal:
        return Decimal(self.total_nusd) / NANOS_PER_USD

    @property
    def priced(self) -> bool:
        return self.version is not None


NOT_BILLABLE = Cost()


def snapshot_of(model: str) -> str | None:
    """The model a dated snapshot name belongs to (``gpt-4o-2024-08-06`` -> ``gpt-4o``); None for other names."""
    match = _DATED.fullmatch(model)
    if match is None:
        return None
    try:
        date(int(match[2]), int(match[3]), int(match[4]))
    except ValueError:
        return None
    return match[1]


def _names(model: str) -> tuple[tuple[str, int], ...]:
    """The names a price may be filed under, with how closely each matches (2 exact, 1 snapshot)."""
    base = snapshot_of(model)
    return ((model, 2),) if base is None else ((model, 2), (base, 1))


def _token_nanos(tokens: int, price_per_million: Decimal) -> int:
    if tokens <= 0:
        return 0
    return int((tokens * price_per_million * _NANO_PER_MILLION).quantize(_ONE, rounding=ROUND_HALF_UP))


def price_usage(price: Price, usage: Usage, version: str | None, factor: Decimal = _ONE) -> Cost:
    """Tokens at a token price (times ``factor``: the batch or flex fraction)."""
    assert price.input is not None and price.output is not None, "a token price"

    def rate(value: Decimal | None, fallback: Decimal) -> Decimal:
        return (fallback if value is None else value) * factor

    # Cached, audio and image input tokens are part of input_tokens (as in OpenAI's usage), audio output of output.
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    rest = usage.input_tokens - cached
    input_audio = min(usage.input_audio_tokens, rest) if price.input_audio is not None else 0
    input_image = min(usage.image_tokens, rest - input_audio) if price.input_image is not None else 0
    output_audio = min(usage.output_audio_tokens, usage.output_tokens) if price.output_audio is not None else 0
    text_input = rest - input_audio - input_image
    input_nusd = (
        _token_nanos(text_input, rate(None, price.input))
        + _token_nanos(input_audio, rate(price.input_audio, price.input))
        + _token_nanos(input_image, rate(price.input_image, price.input))
    )
    cached_nusd = _token_nanos(cached, rate(price.cached_input, price.input))
    output_nusd = _token_nanos(usage.output_tokens - output_audio, rate(None, price.output)) + _token_nanos(
        output_audio, rate(price.output_audio, price.output)
    )
    return Cost(input_nusd, cached_nusd, output_nusd, version=version)


def _tier_factor(price: Price, tier: str | None, *, any_tier: bool) -> Decimal | None:
    """The fraction of the token prices a tier pays; ``any_tier`` (an override): the full price where the table
    gives the tier no fraction."""
    if tier in _STANDARD_TIERS:
        return _ONE
    fraction = price.flex if tier == "flex" else price.batch if tier == "batch" else None
    return _ONE if fraction is None and any_tier else fraction


def _by_unit(price: Price, measure: Measure) -> tuple[bool, Decimal | None]:
    """Whether the price sells this family by the unit, and its USD per unit for the request's options (None:
    not for these options)."""
    unit = UNIT_OF_CATEGORY.get(measure.category)
    if unit == "image" and price.images is not None:
        return True, price.images.per_image(measure.image_quality, measure.image_size)
    if unit is not None and price.unit == unit:
        return True, price.per_unit
    return False, None


def refusal(price: Price, measure: Measure, *, any_tier: bool = False) -> str | None:
    """Why a request with these options cannot be priced, known before it is sent; None if it can be."""
    by_unit, per_unit = _by_unit(price, measure)
    if by_unit:
        if measure.service_tier not in _STANDARD_TIERS and not any_tier:
            return UNPRICED_TIER
        return UNPRICED_OPTION if per_unit is None else None
    if not price.by_tokens:
        return UNPRICED_ENDPOINT
    return UNPRICED_TIER if _tier_factor(price, measure.service_tier, any_tier=any_tier) is None else None


def _counts_audio(measure: Measure, usage: Usage) -> bool:
    """An estimate of speech that counted the audio too (from its length, where its format tells it)."""
    return measure.category == "audio_speeches" and usage.output_audio_tokens > 0


def charge(price: Price, usage: Usage, measure: Measure, version: str, *, any_tier: bool = False) -> Cost:
    """What a billable exchange costs at ``price``, or why it cannot be priced."""
    reason = refusal(price, measure, any_tier=any_tier)
    if reason is not None:
        return Cost(unpriced=reason)
    by_unit, per_unit = _by_unit(price, measure)
    if by_unit:
        assert per_unit is not None, "refusal() checked the options"
        if measure.quantity <= 0:
            return Cost(unpriced=UNPRICED_USAGE)
        nanos = int((measure.quantity * per_unit * _NANOS).quantize(_ONE, rounding=ROUND_HALF_UP))
        return Cost(unit_nusd=nanos, version=version, unit_price=per_unit)
    if measure.category in UNIT_OF_CATEGORY and not measure.usage_reported and not _counts_audio(measure, usage):
        # An estimate counts the prompt only: an image's or a voice's output would be priced as nothing.
        return Cost(unpriced=UNPRICED_USAGE)
    factor = _tier_factor(price, measure.service_tier, any_tier=any_tier)
    assert factor is not None, "refusal() checked the tier"
    return price_usage(price, usage, version, factor)


@dataclass(frozen=True, slots=True)
class PriceOverride:
    id: str
    model: str
    price: Price
    effective_from: float
    tenant_id: str | None = None
    plan_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Found:
    price: Price
    version: str
    override: bool


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
        # (version, model) -> the table entry and how closely it matched; lookups are per event.
        self._table_names: dict[tuple[str, str], tuple[str, int] | None] = {}
        self.set_overrides(overrides, tenant_plans or {})

    @classmethod
    def load(cls, directory: Path = PRICES_DIR) -> PriceBook:
        return cls(PriceTable.from_file(path) for path in sorted(directory.glob("*.yaml")))

    @property
    def current_version(self) -> str:
        return self.table_at(time.time()).version

    def set_overrides(self, overrides: Iterable[PriceOverride], tenant_plans: Mapping[str, str]) -> None:
        by_scope: dict[tuple[str, str], dict[str, list[PriceOverride]]] = {}
        for override in overrides:
            if override.tenant_id:
                scope = ("tenant", override.tenant_id)
            elif override.plan_id:
                scope = ("plan", override.plan_id)
            else:
                scope = _GLOBAL
            by_scope.setdefault(scope, {}).setdefault(override.model, []).append(override)
        for models in by_scope.values():
            for entries in models.values():
                # Ids are time-ordered: of two overrides starting at the same moment, the one created last wins.
                entries.sort(key=lambda o: (o.effective_from, o.id))
        # One assignment, so a writer thread pricing a batch never sees new overrides with old plan memberships.
        self._scopes = (by_scope, dict(tenant_plans))

    def table_at(self, at: float) -> PriceTable:
        return self._tables[max(0, bisect_right(self._starts, at) - 1)]

    def _table_entry(self, table: PriceTable, model: str) -> tuple[str, int] | None:
        key = (table.version, model)
        if key in self._table_names:
            return self._table_names[key]
        if len(self._table_names) >= 10_000:  # model names come from requests: keep the memo bounded
            self._table_names.clear()
        found: tuple[str, int] | None = None
        for name, match in _names(model):
            if name in table.unpriced:
                break  # listed without a price: its base's price is not its price
            if name in table.prices:
                found = (name, match)
                break
        self._table_names[key] = found
        return found

    def _find(self, model: str, tenant_id: str | None, at: float) -> _Found | None:
        table = self.table_at(at)
        best: tuple[int, int, _Found] | None = None  # (match, specificity, found)
        entry = self._table_entry(table, model)
        if entry is not None:
            best = (entry[1], 0, _Found(table.prices[entry[0]], table.version, override=False))
        overrides, tenant_plans = self._scopes
        scopes = [(1, _GLOBAL)]
        if tenant_id is not None:
            plan_id = tenant_plans.get(tenant_id)
            if plan_id is not None:
                scopes.append((2, ("plan", plan_id)))
            scopes.append((3, ("tenant", tenant_id)))
        for specificity, scope in scopes:
            by_model = overrides.get(scope)
            if not by_model:
                continue
            for name, match in _names(model):
                effective = [o for o in by_model.get(name, ()) if o.effective_from <= at]
                if effective:
                    override = effective[-1]
                    # A negotiated rate is the standard one: batch and flex pay the table's fraction of it.
                    listed = table.prices[entry[0]] if entry is not None else None
                    price = override.price
                    if listed is not None and (listed.batch, listed.flex) != (price.batch, price.flex):
                        price = replace(price, batch=listed.batch, flex=listed.flex)
                    found = _Found(price, f"{table.version}+{override.id}", override=True)
                    if best is None or (match, specificity) > best[:2]:
                        best = (match, specificity, found)
                    break
        return None if best is None else best[2]

    def price_for(self, model: str, *, tenant_id: str | None = None, at: float | None = None) -> tuple[Price, str]:
        """The price of ``model`` for this tenant at time ``at`` and its version; KeyError when none is known."""
        found = self._find(model, tenant_id, time.time() if at is None else at)
        if found is None:
            raise KeyError(model)
        return found.price, found.version

    def cost(
        self,
        model: str | None,
        usage: Usage | None,
        *,
        measure: Measure = TOKENS,
        tenant_id: str | None = None,
        at: float | None = None,
        served_model: str | None = None,
    ) -> Cost:
        """What ``usage`` costs (None: not billable). ``served_model`` (the model the upstream answered with) is
        priced first, then the requested ``model``; a billable exchange without a price is unpriced, with why."""
        if usage is None:
            return NOT_BILLABLE
        at = time.time() if at is None else at
        for name in (served_model, model):
            if not name:
                continue
            found = self._find(name, tenant_id, at)
            if found is not None:
                cost = charge(found.price, usage, measure, found.version, any_tier=found.override)
                return self._with_tools(cost, measure.tools, at) if measure.tools != NO_TOOL_CALLS else cost
            if self._listed_unpriced(name, at):
                break  # the model that answered has no price on purpose: the requested alias's price is not its
        return Cost(unpriced=UNPRICED_MODEL)

    def _listed_unpriced(self, model: str, at: float) -> bool:
        """Whether the table in effect lists ``model`` (or the model it is a snapshot of) without a price."""
        unpriced = self.table_at(at).unpriced
        return bool(unpriced) and any(name in unpriced for name, _ in _names(model))

    def _with_tools(self, cost: Cost, tools: ToolCalls, at: float) -> Cost:
        """The cost with its hosted tools' calls and sessions at the table's prices (the same for every plan and
        tenant); unpriced when the table has no price for a tool the answer used."""
        if not cost.priced:
            return cost
        prices = self.table_at(at).tools
        parts: list[int] = []
        for count_field, tool in TOOL_PRICES:
            count = getattr(tools, count_field)
            price = prices.get(tool)
            if count > 0 and (price is None or price.per_unit is None):
                return Cost(unpriced=UNPRICED_TOOL)
            per_unit = price.per_unit if price is not None and price.per_unit is not None else Decimal(0)
            parts.append(int((count * per_unit * _NANOS).quantize(_ONE, rounding=ROUND_HALF_UP)))
        web, files, sessions = parts
        return replace(cost, web_search_nusd=web, file_search_nusd=files, code_interpreter_nusd=sessions)

    def quote(
        self, models: Iterable[str], measure: Measure, *, tenant_id: str | None = None, at: float | None = None
    ) -> str | None:
        """Before a request is sent: None if the first of ``models`` with a price can price it, else why not."""
        at = time.time() if at is None else at
        for name in models:
            found = self._find(name, tenant_id, at) if name else None
            if found is not None:
                return refusal(found.price, measure, any_tier=found.override)
        return UNPRICED_MODEL

    def tool_price(self, tool: str, *, at: float | None = None) -> Price | None:
        """The per-call price of a Responses API tool (``web_search``, ``file_search``), if the table has one."""
        return self.table_at(time.time() if at is None else at).tools.get(tool)
