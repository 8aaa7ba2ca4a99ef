"""The console's SRE view: charts of the last 15 min to 7 days, the current state, and the shipped alerts' states.

Two stores answer, so the view works with no Prometheus at all: the workers' in-process history (traffic,
latency, limiter, metering; observability/series.py) and the usage ledger's rollups in the database (requests,
tokens and cost per minute, hour or day, by tenant, key and model: the only place keys appear, since key ids are
never metric labels). An admin or billing role reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from tenantgate.observability.exposition import merge
from tenantgate.observability.metrics import MetricData
from tenantgate.platform.admin.auth import require_billing
from tenantgate.platform.console.charts import WINDOWS, Filters, chart_data, quantile
from tenantgate.platform.console.routes import CONSOLE_PATH
from tenantgate.platform.deps import engine_of, sessions_of, settings_of, telemetry_of
from tenantgate.platform.errors import BadRequest, ServiceUnavailable
from tenantgate.tenants.metering.pricing import NANOS_PER_USD
from tenantgate.tenants.metering.rollups import Totals, UsageQuery, aggregate
from tenantgate.tenants.models import ApiKey, Tenant

log = logging.getLogger("tenantgate.console")


class _OwnRequests:
    """This worker's requests in flight that are the console's own polling (series, overview): the gateway's
    in-flight gauge counts every request, the view's own included, and an idle gateway is not busy serving it."""

    def __init__(self) -> None:
        self.in_flight = 0


_OWN: weakref.WeakKeyDictionary[Any, _OwnRequests] = weakref.WeakKeyDictionary()  # one per app


async def _own_request(request: Request) -> AsyncIterator[None]:
    own = _OWN.setdefault(request.app, _OwnRequests())
    own.in_flight += 1
    try:
        yield
    finally:
        own.in_flight -= 1


router = APIRouter(
    prefix=CONSOLE_PATH + "/api", tags=["console"], include_in_schema=False, dependencies=[Depends(_own_request)]
)

# window -> width of the ledger's buckets (whole minutes, so the rollups answer exactly)
_LEDGER_WIDTH = {"15m": 60, "1h": 60, "24h": 3600, "7d": 3600}
_WINDOW_SECONDS = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
# Routes of the console itself (and the page it replaced): its own polling is not the gateway's traffic.
_OWN_ROUTES = (CONSOLE_PATH, "/dashboard")
GRAFANA_DASHBOARDS = (("Overview", "tenantgate-overview"), ("Tenant", "tenantgate-tenant"))
_MAX_FILTER = 200


def _filter(value: str | None, param: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > _MAX_FILTER or not value.isprintable():
        raise BadRequest(f"{param} must be at most {_MAX_FILTER} printable characters.", param=param)
    return value


@router.get("/series", dependencies=[Depends(require_billing)])
async def series(
    request: Request,
    window: str = Query("1h", description="15m, 1h, 24h or 7d"),
    tenant: str | None = Query(None, max_length=1000),
    model: str | None = Query(None, max_length=1000),
    upstream: str | None = Query(None, max_length=1000),
    key: str | None = Query(None, max_length=1000),
) -> Response:
    if window not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}.", param="window")
    filters = Filters(_filter(tenant, "tenant"), _filter(model, "model"), _filter(upstream, "upstream"))
    key = _filter(key, "key")
    body: dict[str, Any] = {"metrics_enabled": telemetry_of(request).metrics_enabled}
    if telemetry_of(request).metrics_enabled and key is None:
        histories = await telemetry_of(request).histories()
        body["traffic"] = await asyncio.to_thread(chart_data, histories, window, filters)
    body["ledger"] = await _ledger(request, window, filters, key)
    await _name(request, body)
    return JSONResponse(body)


async def _ledger(request: Request, window: str, filters: Filters, key: str | None) -> dict[str, Any]:
    """Requests, tokens and cost per bucket from the usage rollups, with the window's top tenants, keys, models."""
    width = _LEDGER_WIDTH[window]
    end = (int(time.time()) // width + 1) * width
    start = end - _WINDOW_SECONDS[window] // width * width
    narrow: dict[str, Any] = {
        "project_ids": None if filters.tenant is None else (filters.tenant,),
        "models": None if filters.model is None else (filters.model,),
        "api_key_ids": None if key is None else (key,),
    }
    try:
        async with engine_of(request).connect() as conn:
            buckets = await aggregate(conn, UsageQuery(start, end, width, **narrow), tenant_id=None)
            groups = await aggregate(
                conn,
                UsageQuery(start, end, end - start, group_by=("tenant_id", "api_key_id", "model"), **narrow),
                tenant_id=None,
            )
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None
    starts = list(range(start, end, width))
    per_bucket = [buckets.get(index, {}).get((), Totals()) for index in range(len(starts))]
    hours = width / 3600
    by: dict[str, dict[str, Totals]] = {"tenant": {}, "key": {}, "model": {}}
    for (tenant_id, key_id, model), totals in groups.get(0, {}).items():
        for name, value in (("tenant", tenant_id), ("key", key_id), ("model", model)):
            by[name].setdefault(str(value), Totals()).add(totals)
    total = Totals()
    for totals in per_bucket:
        total.add(totals)
    return {
        "step_seconds": width,
        "t": starts,
        "requests": [t["requests"] for t in per_bucket],
        "input_tokens": [t["input_tokens"] for t in per_bucket],
        "output_tokens": [t["output_tokens"] for t in per_bucket],
        "cost_usd_per_hour": [t.cost_nusd / NANOS_PER_USD / hours for t in per_bucket],
        "total": _row(total),
        "tenants": _top(by["tenant"], "tenant"),
        "keys": _top(by["key"], "key"),
        "models": _top(by["model"], "model"),
    }


def _row(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals["requests"],
        "input_tokens": totals["input_tokens"],
        "output_tokens": totals["output_tokens"],
        # Exact nano-USD as well as a float: the page formats small amounts without rounding them to zero.
        "cost_nano_usd": totals.cost_nusd,
        "cost_usd": totals.cost_nusd / NANOS_PER_USD,
    }


def _top(rows: dict[str, Totals], name: str, limit: int = 50) -> list[dict[str, Any]]:
    ordered = sorted(rows.items(), key=lambda item: (-item[1].cost_nusd, -item[1]["requests"], item[0]))
    return [{name: value, **_row(totals)} for value, totals in ordered[:limit]]


async def _name(request: Request, body: dict[str, Any]) -> None:
    """Tenants and keys shown by name: one lookup of the ids the answer mentions."""
    traffic = body.get("traffic", {}).get("totals", {})
    ledger = body["ledger"]
    key_ids = {row["key"] for row in ledger["keys"]}
    names: dict[str, str] = {}
    keys: dict[str, tuple[str, str]] = {}
    async with sessions_of(request)() as session:
        if key_ids:
            found = await session.execute(
                select(ApiKey.id, ApiKey.name, ApiKey.tenant_id).where(ApiKey.id.in_(key_ids))
            )
            keys = {key_id: (name, tenant_id) for key_id, name, tenant_id in found.all()}
        tenant_ids = {row["tenant"] for row in (*traffic.get("tenants", ()), *ledger["tenants"])}
        tenant_ids.update(tenant_id for _, tenant_id in keys.values())
        if tenant_ids:
            rows = await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
            names = {tenant_id: name for tenant_id, name in rows.all()}
    for row in (*traffic.get("tenants", ()), *ledger["tenants"]):
        row["tenant_name"] = names.get(row["tenant"])
    for row in ledger["keys"]:
        name, tenant_id = keys.get(row["key"], (None, None))
        row["key_name"], row["tenant"] = name, tenant_id
        row["tenant_name"] = names.get(tenant_id) if tenant_id else None


@router.get("/overview", dependencies=[Depends(require_billing)])
async def overview(request: Request) -> Response:
    """The state right now: workers, in flight, dependencies, limiter, metering, routes, and the alerts."""
    telemetry = telemetry_of(request)
    body: dict[str, Any] = {"metrics_enabled": telemetry.metrics_enabled, "generated_at": time.time()}
    if telemetry.metrics_enabled:
        own = _OWN.setdefault(request.app, _OwnRequests()).in_flight  # read with the snapshot below, same instant
        snapshots = await telemetry.snapshots()
        merged = await asyncio.to_thread(merge, snapshots)
        body.update(_current(merged, own))
        body["workers"] = [
            {"pid": s.pid, "exited": s.final, "snapshot_age_seconds": round(max(0.0, time.time() - s.written_at), 1)}
            for s in snapshots
        ]
    settings = settings_of(request)
    body["alerts"] = await _alerts(settings.console_prometheus_url) if settings.console_prometheus_url else None
    grafana = settings.console_grafana_url.rstrip("/")
    body["grafana"] = [{"title": t, "url": f"{grafana}/d/{uid}"} for t, uid in GRAFANA_DASHBOARDS] if grafana else []
    return JSONResponse(body)


def _values(metrics: dict[str, MetricData], name: str, position: int | None = 0) -> dict[str, float]:
    metric = metrics.get(name)
    if metric is None:
        return {}
    out: dict[str, float] = {}
    for point in metric.points:
        label = str(point.labels[position]) if position is not None and point.labels else ""
        out[label] = out.get(label, 0.0) + point.value
    return out


def _current(merged: list[MetricData], own_in_flight: int = 0) -> dict[str, Any]:
    metrics = {metric.spec.name: metric for metric in merged}
    routes: list[dict[str, Any]] = []
    http = metrics.get("http.server.request.duration")
    if http is not None:
        for point in http.points:
            method, route, status = (str(v) for v in point.labels)
            if route.startswith(_OWN_ROUTES):
                continue
            routes.append(
                {
                    "method": method,
                    "route": route or _unrouted(status),
                    "status": status,
                    "requests": point.count,
                    "p95_seconds": quantile(http.spec.buckets, point.counts or (), 0.95),
                }
            )
    routes.sort(key=lambda row: (-row["requests"], row["route"], row["status"]))

    def one(name: str) -> float:
        return sum(_values(metrics, name, None).values())

    return {
        # Exact for the worker answering; another worker's count is as of its last snapshot.
        "in_flight": max(0.0, one("http.server.active_requests") - own_in_flight),
        "worker_count": one("tenantgate.workers"),
        "dependencies": _values(metrics, "tenantgate.dependency.up"),
        "key_cache": _values(metrics, "tenantgate.key_cache.lookups"),
        "limiter_admissions": _values(metrics, "tenantgate.limits.admissions"),
        "auth_failures": _values(metrics, "tenantgate.auth.failures", 1),
        "metering": {
            "buffered_events": one("tenantgate.metering.buffer.depth"),
            "spool_bytes": one("tenantgate.metering.spool.size"),
            "write_lag_seconds": one("tenantgate.metering.write.lag"),
            "rejected_events": one("tenantgate.metering.rejected_events"),
        },
        "routes": routes,
    }


def _unrouted(status: str) -> str:
    """A request without a route template: no route matched it (404, 405), or it was answered before routing (a
    revoked key's 401, a suspended tenant's 403, a malformed request's 400), which is not a path nobody knows."""
    return "(unmatched)" if status in ("404", "405") else "(refused before routing)"


async def _alerts(prometheus: str) -> dict[str, Any]:
    """The shipped rules' states (helm/tenantgate/files/prometheus-rules.yaml) as the Prometheus evaluating them
    sees them; rules of other groups are not ours to show."""
    import aiohttp  # loaded on first use: most workers never ask (tests/test_footprint.py)

    url = prometheus.rstrip("/") + "/api/v1/rules?type=alert"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as client,
            client.get(url) as response,
        ):
            if response.status != 200:
                return {"error": f"Prometheus answered {response.status}"}
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("console: Prometheus at %s did not answer: %s", prometheus, type(exc).__name__)
        return {"error": "Prometheus did not answer"}
    rules = []
    for group in (data.get("data") or {}).get("groups") or ():
        for rule in group.get("rules") or ():
            name = str(rule.get("name", ""))
            if rule.get("type") != "alerting" or not name.startswith("Tenantgate"):
                continue
            rules.append(
                {
                    "name": name,
                    "state": str(rule.get("state", "unknown")),
                    "severity": str((rule.get("labels") or {}).get("severity", "")),
                    "summary": str((rule.get("annotations") or {}).get("summary", "")),
                    "active": len(rule.get("alerts") or ()),
                }
            )
    order = {"firing": 0, "pending": 1}
    rules.sort(key=lambda rule: (order.get(str(rule["state"]), 2), str(rule["name"])))
    return {"rules": rules}
