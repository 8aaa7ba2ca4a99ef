"""The usage event, one typed record: every list of its fields is derived from this declaration.

An event is recorded by the proxy's metering hook (``events.from_exchange``) as a dict of this shape, spooled as one
JSON line, read back and priced by the writer, stored as one row (``store.py``: the batch table's columns and types,
the COPY record), and exported (``reports.py``: the events API and the CSV header). Adding a field is a change
here plus a migration (and the table model, which a test holds to this declaration); nothing else lists fields.

Each field says how it is stored (its Postgres type in the batch statement), whether the writer adds it when it
prices the event, whether its strings repeat from event to event (a batch shares them, to hold less memory), and
what it contributes to the export (computed fields stand in for the cost parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict, get_args, get_origin, get_type_hints

from pydantic import BaseModel, create_model


@dataclass(frozen=True, slots=True)
class Column:
    pg: str
    """Its type in the Postgres batch statement (``text``, ``int8``, ``int4``, ``float8``, ``bool``)."""
    priced: bool = False
    """Added by the writer when it prices the event (not on a spooled line)."""
    shared: bool = False
    """A string that repeats from event to event (tenant, model...): one object per distinct value in a batch."""
    export: tuple[str, ...] | None = None
    """What the field contributes to the events API and CSV, in place: None is the field itself."""


_TEXT, _SHARED = Column("text"), Column("text", shared=True)
_INT8, _INT4, _BOOL = Column("int8"), Column("int4"), Column("bool")


class UsageEvent(TypedDict):
    # Recorded by the metering hook for every exchange.
    id: Annotated[str, _TEXT]
    request_id: Annotated[str, _TEXT]
    occurred_at: Annotated[float, Column("float8")]
    tenant_id: Annotated[str, _SHARED]
    api_key_id: Annotated[str, _SHARED]
    endpoint: Annotated[str, _SHARED]
    category: Annotated[str, _SHARED]
    model: Annotated[str, _SHARED]
    upstream: Annotated[str, _SHARED]
    upstream_model: Annotated[str | None, _SHARED]
    response_model: Annotated[str | None, _SHARED]
    status: Annotated[int, _INT4]
    stream: Annotated[bool, _BOOL]
    billable: Annotated[bool, _BOOL]
    usage_source: Annotated[str | None, _SHARED]
    input_tokens: Annotated[int, _INT8]
    cached_input_tokens: Annotated[int, _INT8]
    output_tokens: Annotated[int, _INT8]
    reasoning_tokens: Annotated[int, _INT8]
    input_audio_tokens: Annotated[int, _INT8]
    output_audio_tokens: Annotated[int, _INT8]
    image_tokens: Annotated[int, _INT8]
    quantity: Annotated[int, Column("int8", export=("quantity", "quantity_unit"))]
    latency_ms: Annotated[int | None, _INT4]
    ttft_ms: Annotated[int | None, _INT4]
    client_disconnected: Annotated[bool, _BOOL]
    error_type: Annotated[str | None, _SHARED]
    attempts: Annotated[int, _INT4]
    # Recorded since events are priced by their options: lines spooled by an earlier version lack them.
    service_tier: NotRequired[Annotated[str | None, _SHARED]]
    image_size: NotRequired[Annotated[str | None, _SHARED]]
    image_quality: NotRequired[Annotated[str | None, _SHARED]]
    # Work done by the Batch API (a line of a batch's output, priced at the batch price); lines spooled before batches
    # were metered lack it: not batch work.
    batch: NotRequired[Annotated[bool, _BOOL]]
    # Hosted tools a Responses answer used, billed per call or per container session; lines spooled before tools
    # were metered lack them: none.
    web_search_calls: NotRequired[Annotated[int, _INT8]]
    file_search_calls: NotRequired[Annotated[int, _INT8]]
    code_interpreter_sessions: NotRequired[Annotated[int, _INT8]]
    # Added by the writer when it prices the event.
    cost_input_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=("cost_usd",))]]
    cost_cached_input_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=())]]
    cost_output_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=())]]
    cost_unit_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=())]]
    cost_web_search_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=())]]
    cost_file_search_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=())]]
    cost_code_interpreter_nusd: NotRequired[Annotated[int, Column("int8", priced=True, export=())]]
    unit_price_usd: NotRequired[Annotated[str | None, Column("text", priced=True, shared=True)]]
    unpriced: NotRequired[Annotated[str | None, Column("text", priced=True, shared=True)]]
    price_version: NotRequired[Annotated[str | None, Column("text", priced=True, shared=True)]]


def _declared() -> tuple[tuple[str, Any, Column, bool], ...]:
    # The hints are evaluated here (the module's annotations are postponed, so the TypedDict's own
    # __required_keys__ cannot see NotRequired).
    found = []
    for name, hint in get_type_hints(UsageEvent, include_extras=True).items():
        required = get_origin(hint) is not NotRequired
        if not required:
            hint = get_args(hint)[0]
        found.append((name, get_args(hint)[0], hint.__metadata__[0], required))
    return tuple(found)


_HINTS = _declared()
DECLARED = tuple((name, kind, column) for name, kind, column, _ in _HINTS)
"""(name, Python type, Column) of every field, in declaration order."""
COLUMNS: tuple[tuple[str, str], ...] = tuple((name, column.pg) for name, _, column in DECLARED)
"""Stored columns in the order the batch statement takes them, with their Postgres types."""
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
PRICED_FIELDS = frozenset(name for name, _, column in DECLARED if column.priced)
REQUIRED_FIELDS = frozenset(name for name, _, _, required in _HINTS if required)
"""What every spooled line must have."""
SHARED_FIELDS = frozenset(name for name, _, column in DECLARED if column.shared)
EXPORT_FIELDS: tuple[str, ...] = (
    *(field for name, _, column in DECLARED for field in (column.export if column.export is not None else (name,))),
    "ingested_at",
)
"""The fields of an exported event (events API, CSV), in order: stored ones, with the computed ``quantity_unit`` and
``cost_usd`` (the sum of the cost parts, null when unpriced) and the time the event was stored."""


def _exported_model() -> type[BaseModel]:
    kinds = {name: kind for name, kind, _ in DECLARED}
    computed: dict[str, Any] = {"quantity_unit": str | None, "cost_usd": str | None, "ingested_at": str | None}
    times = {"occurred_at": str}  # ISO 8601, UTC
    fields: dict[str, Any] = {"object": (Literal["usage.event"], ...)}
    for name in EXPORT_FIELDS:
        kind = times.get(name) or computed.get(name) or kinds[name]
        if name in PRICED_FIELDS or name in _OPTIONAL_RECORDED:
            kind = kind | None
        fields[name] = (kind, ...)
    return create_model(
        "UsageEventOut", __doc__="One usage event as the events API and the CSV export show it.", **fields
    )


_OPTIONAL_RECORDED = frozenset(name for name, _, _, required in _HINTS if not required) - PRICED_FIELDS
UsageEventOut = _exported_model()
"""The exported event's schema (the events API's OpenAPI), derived like everything else from ``UsageEvent``."""
