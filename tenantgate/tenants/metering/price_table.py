"""The versioned price files (``prices/<effective date>.yaml``): what one model costs, in whatever unit it is sold.

A model's entry says one of:

- token prices, USD per 1M tokens: ``input`` and ``output`` (required together), ``cached_input``,
  ``input_audio``, ``output_audio``, ``input_image`` (default: the input/output price);
- ``per_image``: USD per image by quality and size (``{standard: {1024x1024: "0.040"}}``), with
  ``default_quality`` and ``default_size`` for requests that name neither;
- ``per_1m_characters`` (speech), ``per_minute`` (billed by the second: transcription), ``per_1k_calls`` (tools),
  ``per_session`` (a code interpreter container);

and, for token prices, what the Batch API and flex processing charge as a fraction of them (``batch``, ``flex``;
the file's ``tiers.batch`` is every token-priced model's default, ``batch: null`` says a model has none).

A model listed as ``null`` has no price on purpose (OpenAI sells it at a price the table cannot verify or express):
its events are unpriced, and its exact name keeps the snapshot rule from pricing it as its base model.

Parsing is strict: a price file that says something this module cannot price is refused at load, never read as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml

SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it (its wheels do): the same documents as ``yaml.safe_load`` at a fifth of
the CPU. Every worker reads the bundled price tables as it starts (and the test suite starts a thousand gateways):
8 ms of CPU for the three tables here, against 43 ms with the pure-Python parser."""

Unit = Literal["image", "character", "second", "call", "session"]

_TOKEN_FIELDS = ("input", "output", "cached_input", "input_audio", "output_audio", "input_image")
_UNIT_FIELDS: dict[str, tuple[Unit, Decimal]] = {
    # field: (unit billed, units per priced amount)
    "per_1m_characters": ("character", Decimal(1_000_000)),
    "per_minute": ("second", Decimal(60)),
    "per_1k_calls": ("call", Decimal(1000)),
    "per_session": ("session", Decimal(1)),
}
_IMAGE_FIELDS = ("per_image", "default_quality", "default_size")
_TIER_FIELDS = ("batch", "flex")
_KNOWN_FIELDS = frozenset((*_TOKEN_FIELDS, *_UNIT_FIELDS, *_IMAGE_FIELDS, *_TIER_FIELDS))


def _decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"price {name}={value!r} must be a non-negative number")
    try:
        parsed = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"price {name}={value!r} must be a non-negative number") from None
    if not parsed.is_finite() or parsed < 0:
        raise ValueError(f"price {name}={value!r} must be a non-negative number")
    return parsed


def _fraction(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    parsed = _decimal(name, value)
    if parsed > 1:
        raise ValueError(f"{name}={value!r} is a fraction of the standard price, at most 1")
    return parsed


@dataclass(frozen=True, slots=True)
class ImagePrices:
    """USD per image, by (quality, size)."""

    prices: Mapping[tuple[str, str], Decimal]
    default_quality: str
    default_size: str

    def per_image(self, quality: str | None, size: str | None) -> Decimal | None:
        """None when the request asked for a quality or size this model has no price for."""
        chosen_quality = self.default_quality if quality in (None, "auto") else quality
        chosen_size = self.default_size if size in (None, "auto") else size
        return self.prices.get((str(chosen_quality), str(chosen_size)))

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> ImagePrices:
        table = fields["per_image"]
        if not isinstance(table, dict) or not table:
            raise ValueError("per_image must map qualities to {size: price}")
        prices: dict[tuple[str, str], Decimal] = {}
        for quality, sizes in table.items():
            if not isinstance(sizes, dict) or not sizes:
                raise ValueError(f"per_image.{quality} must map sizes to prices")
            for size, value in sizes.items():
                prices[(str(quality), str(size))] = _decimal(f"per_image.{quality}.{size}", value)
        default_quality = str(fields.get("default_quality") or next(iter(table)))
        default_size = str(fields.get("default_size") or "1024x1024")
        if (default_quality, default_size) not in prices:
            raise ValueError(f"no per_image price for the defaults {default_quality} {default_size}")
        return cls(prices, default_quality, default_size)


@dataclass(frozen=True, slots=True)
class Price:
    """One model's price. Token prices are USD per 1M tokens; ``per_unit`` is USD per one ``unit``."""

    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    input_image: Decimal | None = None
    images: ImagePrices | None = None
    unit: Unit | None = None
    per_unit: Decimal | None = None
    batch: Decimal | None = None
    """Fraction of the token prices the Batch API charges; None: no batch price."""
    flex: Decimal | None = None
    """Fraction of the token prices flex processing (``service_tier: "flex"``) charges; None: no flex price."""

    @property
    def by_tokens(self) -> bool:
        return self.input is not None and self.output is not None

    @classmethod
    def parse(cls, fields: Mapping[str, Any], *, batch_default: Decimal | None = None) -> Price:
        if not isinstance(fields, Mapping):
            raise ValueError(f"a price is a mapping of fields, not {type(fields).__name__}")
        unknown = set(fields) - _KNOWN_FIELDS
        if unknown:
            raise ValueError(f"unknown price field(s) {', '.join(sorted(map(str, unknown)))}")
        tokens = {name: _decimal(name, fields[name]) for name in _TOKEN_FIELDS if fields.get(name) is not None}
        if tokens and ("input" not in tokens or "output" not in tokens):
            raise ValueError("token prices need at least input and output")
        units = [name for name in _UNIT_FIELDS if fields.get(name) is not None]
        kinds = bool(tokens) + bool(units) + ("per_image" in fields)
        if kinds != 1 or len(units) > 1:
            raise ValueError(
                "a price is one of: token prices, per_image, per_1m_characters, per_minute, per_1k_calls, per_session"
            )
        unit: Unit | None = None
        per_unit: Decimal | None = None
        if units:
            unit, per = _UNIT_FIELDS[units[0]]
            per_unit = _decimal(units[0], fields[units[0]]) / per
        images = ImagePrices.parse(fields) if "per_image" in fields else None
        batch = _fraction("batch", fields["batch"]) if "batch" in fields else batch_default
        return cls(
            **tokens,
            images=images,
            unit=unit,
            per_unit=per_unit,
            batch=batch if tokens else None,
            flex=_fraction("flex", fields.get("flex")) if tokens else None,
        )


@dataclass(frozen=True, slots=True)
class PriceTable:
    version: str
    effective_from: float
    prices: Mapping[str, Price]
    tools: Mapping[str, Price] = field(default_factory=dict)
    """Prices of Responses API hosted tools: per call (web_search, file_search), per session (code_interpreter)."""
    source: str | None = None
    unpriced: frozenset[str] = frozenset()
    """Models listed without a price (``model: null``): never priced by the table, not even as a snapshot."""

    @classmethod
    def from_file(cls, path: Path, loader: Any = None) -> PriceTable:
        """``loader``: a PyYAML safe loader class (default: libyaml's, ``SAFE_LOADER``). A file read before and not
        changed since (same modification time and size) is not read again: tables are immutable."""
        if loader is not None:
            return cls._parse(path, loader)
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        key = str(path.resolve())
        read = _READ.get(key)
        if read is None or read[0] != version:
            read = _READ[key] = (version, cls._parse(path, SAFE_LOADER))
        return read[1]

    @classmethod
    def _parse(cls, path: Path, loader: Any) -> PriceTable:
        raw = yaml.load(path.read_text(), Loader=loader)
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            raise ValueError(f"{path.name}: expected a mapping with 'version', 'effective_from' and 'models'")
        effective = raw.get("effective_from", path.stem)
        day = effective if isinstance(effective, date) else date.fromisoformat(str(effective))
        try:
            tiers = raw.get("tiers") or {}
            batch_default = _fraction("tiers.batch", tiers.get("batch"))
            models = raw["models"]
            prices = {str(m): Price.parse(f, batch_default=batch_default) for m, f in models.items() if f is not None}
            unpriced = frozenset(str(m) for m, f in models.items() if f is None)
            tools = {str(t): Price.parse(f) for t, f in (raw.get("tools") or {}).items()}
        except (ValueError, ArithmeticError, AttributeError, TypeError) as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        for name, price in tools.items():
            if price.unit not in ("call", "session"):
                raise ValueError(f"{path.name}: tool {name} needs a per_1k_calls or per_session price")
        return cls(
            version=str(raw.get("version", path.stem)),
            effective_from=datetime(day.year, day.month, day.day).replace(tzinfo=UTC).timestamp(),
            prices=prices,
            tools=tools,
            source=raw.get("source"),
            unpriced=unpriced,
        )


_READ: dict[str, tuple[tuple[int, int], PriceTable]] = {}
"""The table last read from each path by this process, with that file's (modification time, size) then: a changed
file replaces its entry instead of adding one."""
