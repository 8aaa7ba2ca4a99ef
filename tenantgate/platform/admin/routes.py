"""The admin API under /admin, one router per resource. Every route declares the role it needs (see auth)."""

from __future__ import annotations

from fastapi import APIRouter

from tenantgate.platform.admin import audit, keys, plans, prices, tenants, tokens

router = APIRouter(prefix="/admin")
for _resource in (tenants, keys, plans, prices, tokens, audit):
    router.include_router(_resource.router)
