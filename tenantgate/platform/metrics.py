"""``GET /metrics``: every worker's metrics in the Prometheus text format (see observability/exposition.py).

Metrics name tenants and their traffic, so they stay off the tenant surface: on the main port ``/metrics`` needs an
admin or billing token, and ``TENANTGATE_METRICS_PORT`` opens a separate listener (``TENANTGATE_METRICS_HOST``)
that serves only ``/metrics``, unauthenticated, for a Prometheus inside the network (metrics_listener.py; the Helm
chart's ServiceMonitor scrapes it, and its ingress never routes that port).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tenantgate.platform.admin.auth import require_billing
from tenantgate.platform.deps import telemetry_of
from tenantgate.platform.errors import NotFound
from tenantgate.wire.prometheus import CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of all worker processes (admin or billing token; see TENANTGATE_METRICS_PORT)",
    response_class=Response,
    dependencies=[Depends(require_billing)],
)
async def metrics(request: Request) -> Response:
    if not telemetry_of(request).metrics_enabled:
        raise NotFound("Metrics are disabled (TENANTGATE_METRICS_ENABLED=false).", code="metrics_disabled")
    return Response(await telemetry_of(request).prometheus(), media_type=CONTENT_TYPE)
