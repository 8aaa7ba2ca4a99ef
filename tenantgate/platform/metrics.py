"""``GET /metrics``: every worker's metrics in the Prometheus text format (see observability/exposition.py).

Unauthenticated, like the probes, so a Prometheus in the cluster can scrape it; its labels carry tenant ids but
never keys or secrets. Keep it off the public ingress.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tenantgate.observability.exposition import CONTENT_TYPE
from tenantgate.platform.errors import NotFound
from tenantgate.platform.runtime import Runtime

router = APIRouter(tags=["ops"])


@router.get("/metrics", summary="Prometheus metrics of all worker processes", response_class=Response)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not runtime.telemetry.metrics_enabled:
        raise NotFound("Metrics are disabled (TENANTGATE_METRICS_ENABLED=false).", code="metrics_disabled")
    return Response(await runtime.telemetry.prometheus(), media_type=CONTENT_TYPE)
