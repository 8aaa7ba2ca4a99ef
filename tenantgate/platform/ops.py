"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tenantgate.platform.deps import health_of

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process is serving")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database (and Redis, if configured) reachable, not draining")
async def readyz(request: Request) -> JSONResponse:
    database, redis = await asyncio.gather(health_of(request).check_database(), health_of(request).check_redis())
    draining = health_of(request).shutting_down()
    checks = {"database": database, "redis": redis, "shutting_down": draining}
    ready = database and redis is not False and not draining
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
