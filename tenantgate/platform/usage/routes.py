"""OpenAI's Usage and Costs API, answered from the rollups and scoped by the caller.

``GET /v1/organization/usage/{completions,embeddings,moderations,images,audio_speeches,audio_transcriptions,
vector_stores,code_interpreter_sessions,web_search_calls,file_search_calls}`` and ``GET /v1/organization/costs`` take
OpenAI's parameters and answer in its shape (``tenant`` = ``project``, tenant key = ``api_key``). Decisions where
OpenAI says nothing:

- Buckets snap to UTC boundaries of their width (as Anthropic's usage API documents; OpenAI's examples are
  aligned too): the first bucket is the minute/hour/day that contains ``start_time``, the last the one that
  contains the instant before ``end_time`` (default: now, so the current bucket is included). Every bucket is
  then exactly one rollup bucket, which keeps a query at O(buckets x groups) whatever the traffic.
- A tenant key sees its own tenant only: every filter is intersected with it, so naming another tenant's project
  or key yields empty results, never their data. Grouping by ``project_id`` is allowed and shows only its own.
- Results carry ``estimated_requests``: how many of the requests had their tokens estimated (the upstream never
  reported usage because the client went away or the stream broke).
- Costs results carry ``unpriced_requests``: billable requests no price covered (pricing.py says why). They are not
  in ``amount``, neither as 0 nor as anything else: ``amount`` is the cost of the priced requests. Grouped by
  ``line_item``, a model's unpriced requests are their own line item ``"<model>, unpriced"`` with a null
  ``amount``. Line items are named ``"<model>, input|cached input|output"``, and ``"<model>, images|characters|
  seconds"`` for what is sold by the unit; a model name is never left out (``"(unknown model), ..."``).
- ``batch=true|false`` filters completions by whether the Batch API did the work, and ``group_by=batch`` splits
  them (OpenAI's own filter and group-by); batch work is priced at the batch rate. The costs API's line items of
  batch work end in ``(batch)``, as OpenAI's do.
- Hosted tools of the Responses API, as OpenAI's families: ``code_interpreter_sessions`` (``num_sessions``),
  ``web_search_calls`` (``num_requests`` calls, by ``num_model_requests`` responses) and ``file_search_calls``
  (``num_requests``); their grouping by user or vector store is not kept here. Their costs are the line items
  ``"<model>, web search tool calls"``, ``"..., file search tool calls"`` and ``"..., code interpreter sessions"``,
  under the model of the response that used them.
- Lists may be sent as ``group_by=a&group_by=b``, ``group_by[]=a`` (what the SDKs send) or ``group_by=a,b``.
"""

from __future__ import annotations

import base64
import time
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.exc import SQLAlchemyError

from tenantgate.platform.deps import engine_of
from tenantgate.platform.errors import BadRequest, ServiceUnavailable
from tenantgate.platform.usage.auth import UsageReader, usage_reader
from tenantgate.tenants.metering.pricing import NANOS_PER_USD
from tenantgate.tenants.metering.reports import QUANTITY_UNITS
from tenantgate.tenants.metering.rollups import Buckets, Totals, UsageQuery, aggregate
from tenantgate.tenants.vector_store_usage import usage_buckets

router = APIRouter(prefix="/v1/organization", tags=["usage"])


class Family(StrEnum):
    completions = "completions"
    embeddings = "embeddings"
    moderations = "moderations"
    images = "images"
    audio_speeches = "audio_speeches"
    audio_transcriptions = "audio_transcriptions"
    code_interpreter_sessions = "code_interpreter_sessions"
    web_search_calls = "web_search_calls"
    file_search_calls = "file_search_calls"


# Families counted from hosted tools' use (by Responses API answers, whatever family their tokens are in): the name
# of their results' object, and each count field with the rollup column it sums. Groups that used none are left out.
_TOOL_FAMILIES = {
    Family.code_interpreter_sessions: ("code_interpreter_sessions", {"num_sessions": "code_interpreter_sessions"}),
    Family.web_search_calls: (
        "web_searches",
        {"num_requests": "web_search_calls", "num_model_requests": "web_search_requests"},
    ),
    Family.file_search_calls: ("file_searches", {"num_requests": "file_search_calls"}),
}


class BucketWidth(StrEnum):
    minute = "1m"
    hour = "1h"
    day = "1d"


# width in seconds, default and maximum number of buckets per page (OpenAI's numbers)
_USAGE_LIMITS = {BucketWidth.minute: (60, 60, 1440), BucketWidth.hour: (3600, 24, 168), BucketWidth.day: (86400, 7, 31)}
_COSTS_LIMITS = (7, 180)
_USAGE_GROUPS = {"project_id": "tenant_id", "api_key_id": "api_key_id", "model": "model", "batch": "batch"}
_COSTS_GROUPS = {"project_id": "tenant_id", "api_key_id": "api_key_id", "line_item": "model"}
_LINE_ITEMS = (("input", "cost_input_nusd"), ("cached input", "cost_cached_input_nusd"), ("output", "cost_output_nusd"))
_TOOL_LINE_ITEMS = (
    ("web search tool calls", "cost_web_search_nusd"),
    ("file search tool calls", "cost_file_search_nusd"),
    ("code interpreter sessions", "cost_code_interpreter_nusd"),
)
_UNKNOWN_MODEL = "(unknown model)"


def _list(request: Request, name: str) -> tuple[str, ...] | None:
    values = [
        part.strip()
        for key, value in request.query_params.multi_items()
        if key in (name, f"{name}[]")
        for part in value.split(",")
        if part.strip()
    ]
    return tuple(values) if values else None


def _cursor(start: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"bucket:{start}".encode()).decode()


def _from_cursor(page: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(page.removeprefix("page_")).decode()
        if not raw.startswith("bucket:"):
            raise ValueError
        return int(raw.removeprefix("bucket:"))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid page cursor: pass `next_page` of a previous response.", param="page") from None


class _Window:
    """The buckets of one page."""

    def __init__(self, start_time: int, end_time: int | None, width: int, limit: int, page: str | None) -> None:
        if end_time is not None and end_time <= start_time:
            raise BadRequest("end_time must be after start_time.", param="end_time")
        end = end_time if end_time is not None else int(time.time()) + 1
        self.start = start_time // width * width
        self.end = -(-end // width) * width
        self.width = width
        first = self.start
        if page is not None:
            first = _from_cursor(page)
            if first <= self.start or first >= self.end or (first - self.start) % width:
                raise BadRequest("The page cursor does not belong to this query.", param="page")
        self.first = first
        self.last = min(self.end, first + limit * width)
        self.has_more = self.last < self.end

    def bounds(self) -> list[tuple[int, int]]:
        return [(s, s + self.width) for s in range(self.first, self.last, self.width)]

    def query(self, **fields: Any) -> UsageQuery:
        return UsageQuery(start=self.first, end=self.last, width=self.width, **fields)

    def page(self, results: list[list[dict[str, Any]]]) -> dict[str, Any]:
        data = [
            {"object": "bucket", "start_time": s, "end_time": e, "results": bucket}
            for (s, e), bucket in zip(self.bounds(), results, strict=True)
        ]
        return {
            "object": "page",
            "data": data,
            "has_more": self.has_more,
            "next_page": _cursor(self.last) if self.has_more else None,
        }


def _limit(value: int | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum} for this bucket width.", param="limit")
    return value


def _group_by(request: Request, allowed: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = _list(request, "group_by") or ()
    for name in names:
        if name not in allowed:
            raise BadRequest(f"Unsupported group_by value {name!r}; supported: {', '.join(allowed)}.", param="group_by")
    names = tuple(dict.fromkeys(names))
    return names, tuple(dict.fromkeys(allowed[name] for name in names))


async def _aggregate(request: Request, query: UsageQuery, reader: UsageReader) -> Buckets:
    try:
        async with engine_of(request).connect() as conn:
            return await aggregate(conn, query, tenant_id=reader.tenant_id)
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None


def _groups(names: tuple[str, ...], dimensions: tuple[str, ...], key: tuple[Any, ...]) -> dict[str, Any]:
    values = dict(zip(dimensions, key, strict=True))
    group: dict[str, Any] = {"project_id": None, "api_key_id": None}
    for name in names:
        value = values[_USAGE_GROUPS.get(name) or _COSTS_GROUPS[name]]
        group[name] = bool(value) if name == "batch" else value
    return group


def _batch_filter(value: str | None, family: Family | None = None) -> bool | None:
    if value is None:
        return None
    if family is not None and family is not Family.completions:
        raise BadRequest("The batch filter applies to completions usage only.", param="batch")
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f"Invalid 'batch': {value[:32]!r}; use true or false.", param="batch")


def _usage_fields(family: Family, t: Totals) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    if family in _TOOL_FAMILIES:
        return {name: t[column] for name, column in _TOOL_FAMILIES[family][1].items()}
    if family is Family.completions:
        counts = {
            "input_tokens": t["input_tokens"],
            "input_cached_tokens": t["cached_input_tokens"],
            "output_tokens": t["output_tokens"],
            "input_audio_tokens": t["input_audio_tokens"],
            "output_audio_tokens": t["output_audio_tokens"],
            "output_reasoning_tokens": t["reasoning_tokens"],
        }
    elif family in (Family.embeddings, Family.moderations):
        counts = {"input_tokens": t["input_tokens"]}
    elif family is Family.images:
        counts = {"images": t["quantity"]}
    elif family is Family.audio_speeches:
        counts = {"characters": t["quantity"]}
    else:
        counts = {"seconds": t["quantity"]}
    return {**counts, "num_model_requests": t["requests"], "estimated_requests": t["estimated_requests"]}


@router.get("/usage/vector_stores", summary="Vector store storage per time bucket, in OpenAI's Usage API shape")
async def vector_store_usage(
    request: Request,
    start_time: int = Query(ge=0, description="Unix seconds, inclusive"),
    end_time: int | None = Query(None, ge=0, description="Unix seconds, exclusive (default: now)"),
    bucket_width: BucketWidth = BucketWidth.day,
    limit: int | None = Query(None, description="Buckets per page (1d: 7, max 31; 1h: 24, max 168; 1m: 60, max 1440)"),
    page: str | None = Query(None, description="`next_page` of the previous response"),
    reader: UsageReader = Depends(usage_reader),
) -> dict[str, Any]:
    """``usage_bytes``: per bucket, the most each of the tenant's vector stores held in the hours the bucket overlaps
    (tenants/vector_store_usage.py), summed; grouped by ``project_id`` on request (OpenAI's only group-by here)."""
    width, default, maximum = _USAGE_LIMITS[bucket_width]
    window = _Window(start_time, end_time, width, _limit(limit, default, maximum), page)
    names, _ = _group_by(request, {"project_id": "tenant_id"})
    tenants = _list(request, "project_ids")
    if reader.tenant_id is not None:
        tenants = tuple(t for t in (tenants or (reader.tenant_id,)) if t == reader.tenant_id)
    try:
        async with engine_of(request).connect() as conn:
            buckets = await usage_buckets(conn, tenants, window.bounds())
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None
    results: list[list[dict[str, Any]]] = []
    for per_tenant in buckets:
        groups = sorted(per_tenant.items()) if names else ([(None, sum(per_tenant.values()))] if per_tenant else [])
        results.append(
            [
                {"object": "organization.usage.vector_stores.result", "usage_bytes": size, "project_id": tenant_id}
                for tenant_id, size in groups
            ]
        )
    return window.page(results)


@router.get("/usage/{family}", summary="Usage per time bucket, in OpenAI's Usage API shape")
async def usage(
    request: Request,
    family: Family,
    start_time: int = Query(ge=0, description="Unix seconds, inclusive"),
    end_time: int | None = Query(None, ge=0, description="Unix seconds, exclusive (default: now)"),
    bucket_width: BucketWidth = BucketWidth.day,
    limit: int | None = Query(None, description="Buckets per page (1d: 7, max 31; 1h: 24, max 168; 1m: 60, max 1440)"),
    page: str | None = Query(None, description="`next_page` of the previous response"),
    batch: str | None = Query(None, description="completions only: true for Batch API work, false for the rest"),
    reader: UsageReader = Depends(usage_reader),
) -> dict[str, Any]:
    width, default, maximum = _USAGE_LIMITS[bucket_width]
    window = _Window(start_time, end_time, width, _limit(limit, default, maximum), page)
    names, dimensions = _group_by(request, _USAGE_GROUPS)
    if "batch" in names and family is not Family.completions:
        raise BadRequest("group_by=batch applies to completions usage only.", param="group_by")
    query = window.query(
        batch=_batch_filter(batch, family),
        group_by=dimensions,
        categories=None if family in _TOOL_FAMILIES else (family.value,),
        project_ids=_list(request, "project_ids"),
        api_key_ids=_list(request, "api_key_ids"),
        models=_list(request, "models"),
    )
    buckets = await _aggregate(request, query, reader)
    results = []
    for index in range(len(window.bounds())):
        rows = sorted(buckets.get(index, {}).items(), key=lambda item: tuple(str(v) for v in item[0]))
        if family in _TOOL_FAMILIES:
            rows = [(key, totals) for key, totals in rows if any(totals[c] for c in _TOOL_FAMILIES[family][1].values())]
        results.append(
            [
                {
                    "object": f"organization.usage.{_TOOL_FAMILIES.get(family, (family.value,))[0]}.result",
                    **_usage_fields(family, totals),
                    "model": None,
                    **({"batch": None} if family is Family.completions else {}),
                    **_groups(names, dimensions, key),
                }
                for key, totals in rows
            ]
        )
    return window.page(results)


@router.get("/costs", summary="Costs per time bucket, in OpenAI's Costs API shape")
async def costs(
    request: Request,
    start_time: int = Query(ge=0, description="Unix seconds, inclusive"),
    end_time: int | None = Query(None, ge=0, description="Unix seconds, exclusive (default: now)"),
    bucket_width: BucketWidth = BucketWidth.day,
    limit: int | None = Query(None, description="Buckets per page (default 7, max 180)"),
    page: str | None = Query(None, description="`next_page` of the previous response"),
    reader: UsageReader = Depends(usage_reader),
) -> dict[str, Any]:
    width = _USAGE_LIMITS[bucket_width][0]
    window = _Window(start_time, end_time, width, _limit(limit, *_COSTS_LIMITS), page)
    names, dimensions = _group_by(request, _COSTS_GROUPS)
    line_items = _list(request, "line_items")
    by_line_item = "line_item" in names
    query = window.query(
        # Line items of unit costs are named by what their family's quantity counts.
        group_by=(*dimensions, "category", "batch") if by_line_item else dimensions,
        project_ids=_list(request, "project_ids"),
        api_key_ids=_list(request, "api_key_ids"),
    )
    buckets = await _aggregate(request, query, reader)
    results = []
    for index in range(len(window.bounds())):
        rows = sorted(buckets.get(index, {}).items(), key=lambda item: tuple(str(v) for v in item[0]))
        if not by_line_item:
            results.append(
                [_cost_result(t.cost_nusd, t["unpriced_requests"], _groups(names, dimensions, key)) for key, t in rows]
            )
            continue
        # One result per group and line item (a model used by two families adds up), in first-seen order.
        merged: dict[tuple[Any, ...], list[Any]] = {}  # -> [group, nano-USD or None, unpriced requests]
        for key, totals in rows:
            group = _groups(names, dimensions, key[:-2])
            model = str(group["line_item"] or _UNKNOWN_MODEL)
            for item, nanos, unpriced in _line_items(model, str(key[-2]), bool(key[-1]), totals):
                if line_items is not None and item not in line_items:
                    continue
                entry = merged.setdefault((*group.values(), item), [{**group, "line_item": item}, 0, 0])
                entry[1] = None if entry[1] is None or nanos is None else entry[1] + nanos
                entry[2] += unpriced
        bucket = [_cost_result(nanos, unpriced, group) for group, nanos, unpriced in merged.values()]
        results.append(bucket)
    return window.page(results)


def _line_items(model: str, category: str, batch: bool, totals: Totals) -> list[tuple[str, int | None, int]]:
    """(line item, nano-USD or None for unpriced, unpriced requests) of one model's totals in one family (batch work:
    items of its own, ``"<model>, input (batch)"``)."""
    work = " (batch)" if batch else ""
    items: list[tuple[str, int | None, int]] = [
        (f"{model}, {label}{work}", totals[field], 0) for label, field in _LINE_ITEMS if totals[field]
    ]
    if totals["cost_unit_nusd"]:
        items.append((f"{model}, {QUANTITY_UNITS.get(category, 'units')}", totals["cost_unit_nusd"], 0))
    items.extend((f"{model}, {label}{work}", totals[field], 0) for label, field in _TOOL_LINE_ITEMS if totals[field])
    if totals["unpriced_requests"]:
        items.append((f"{model}, unpriced", None, totals["unpriced_requests"]))
    return items


def _cost_result(nanos: int | None, unpriced: int, group: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": None if nanos is None else {"value": nanos / NANOS_PER_USD, "currency": "usd"},
        **group,
        "unpriced_requests": unpriced,
    }
