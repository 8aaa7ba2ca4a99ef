"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tenantgate.platform.runtime import Runtime

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process is serving")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database (and Redis, if configured) reachable, not draining")
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    database, redis = await asyncio.gather(runtime.check_database(), runtime.check_redis())
    checks = {"database": database, "redis": redis, "shutting_down": runtime.shutting_down}
    ready = database and redis is not False and not runtime.shutting_down
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
