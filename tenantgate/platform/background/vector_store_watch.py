"""The poller's look at a live vector store: its ``usage_bytes`` now, for the index (lists, ``/v1/me``) and for the
Usage API's hourly record (``tenants/vector_store_usage.py``), so storage is reported for the hours in which no one
asked about the store. A store the upstream no longer knows (deleted elsewhere, expired) leaves the index."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from tenantgate.platform.background.settlement import Reach
from tenantgate.platform.proxy.routes import RETRIEVE_VECTOR_STORE
from tenantgate.platform.proxy.upstream_calls import get_json
from tenantgate.platform.proxy.vector_store_answers import usage_bytes
from tenantgate.platform.upstream.client import UpstreamClient
from tenantgate.tenants.models import TenantObject, utcnow
from tenantgate.tenants.object_index import ObjectIndex
from tenantgate.tenants.objects import Owner
from tenantgate.tenants.vector_store_usage import VectorStoreUsageLog

log = logging.getLogger("tenantgate.objects")


class VectorStoreWatch:
    def __init__(
        self, http: UpstreamClient, index: ObjectIndex, usage: VectorStoreUsageLog, reach: Reach, seconds: float
    ) -> None:
        self.http = http
        self.index = index
        self.usage = usage
        self.reach = reach
        self.seconds = seconds

    async def poll(self, row: TenantObject) -> None:
        owner = Owner(row.tenant_id, row.upstream, "tenant" if row.account == "tenant" else "platform", row.api_key_id)
        reached = await self.reach(owner)
        if reached is None:
            log.warning(
                "objects: vector store %s cannot be reached (its tenant's key for %r is gone)", row.id, row.upstream
            )
            return
        upstream, keys = reached
        path = RETRIEVE_VECTOR_STORE.upstream({"vector_store_id": row.id})
        status, store = await get_json(self.http, upstream, keys, "GET", path)
        if status == 404:
            await self.index.deleted(row.tenant_id, row.id)
            return
        if status != 200 or store is None or store.get("id") != row.id:
            return
        size = usage_bytes(store)
        state = store.get("status")
        await self.index.seen(
            row.tenant_id,
            row.id,
            status=state[:32] if isinstance(state, str) else None,
            snapshot=store,
            bytes=size,
            poll_at=utcnow() + timedelta(seconds=self.seconds),
        )
        if size is not None:
            await self.usage.record(row.tenant_id, row.id, size, time.time())
