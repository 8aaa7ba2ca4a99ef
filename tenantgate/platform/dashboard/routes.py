"""``/dashboard``: a static page (no build step; its JS and CSS ship in the package) and its JSON summary.

The page itself is public and holds no data; it asks for an admin or billing token (the ``billing`` role reads,
``admin`` implies it), keeps it in the tab's sessionStorage and sends it as a bearer token to
``/dashboard/api/summary`` and to the usage API.
Every response forbids framing, inline scripts and referrers.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from tenantgate.observability.exposition import merge
from tenantgate.platform.admin.auth import require_billing
from tenantgate.platform.dashboard.summary import build_summary
from tenantgate.platform.errors import NotFound
from tenantgate.platform.runtime import Runtime

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _asset(name: str) -> Response:
    body = resources.files("tenantgate.platform.dashboard").joinpath("static", name).read_bytes()
    return Response(body, media_type=_ASSETS[name], headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.get("", response_class=Response)
async def page() -> Response:
    return _asset("index.html")


@router.get("/assets/{name}", response_class=Response)
async def asset(name: str) -> Response:
    if name not in _ASSETS or name == "index.html":
        raise NotFound(f"No dashboard asset {name!r}.")
    return _asset(name)


@router.get("/api/summary", dependencies=[Depends(require_billing)])
async def summary(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    telemetry = runtime.telemetry
    body: dict[str, Any] = {"metrics_enabled": telemetry.metrics_enabled}
    if telemetry.metrics_enabled:
        snapshots = await telemetry.snapshots()
        body.update(await asyncio.to_thread(lambda: build_summary(merge(snapshots), snapshots)))
    return JSONResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})
