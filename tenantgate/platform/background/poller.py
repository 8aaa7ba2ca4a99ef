"""The one background poller of a deployment: looks at batches and background responses in flight until they end,
and at live vector stores now and then (their storage, ``vector_store_watch.py``).

Every process runs the loop; only the holder of the database lease (``tenants/lease.py``) polls, so a deployment of
many workers and replicas asks the upstream once per object and interval. Each due object is postponed by one
interval before it is looked at, so one that fails (an upstream down, a tenant's key gone) is tried again later
rather than at once, and a holder that dies mid-poll leaves nothing stuck: the lease expires, another process
takes it, the object is due again. What a poll finds is settled exactly once (``settlement.py``), so a batch that
ended while no gateway was running is billed when one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tenantgate.platform.background.settlement import Settler
from tenantgate.platform.background.vector_store_watch import VectorStoreWatch
from tenantgate.tenants.lease import DatabaseLease
from tenantgate.tenants.models import utcnow
from tenantgate.tenants.object_index import ObjectIndex

log = logging.getLogger("tenantgate.objects")

LEASE_NAME = "object-poller"
_BATCH = 100


class Poller:
    def __init__(
        self,
        index: ObjectIndex,
        lease: DatabaseLease,
        settler: Settler,
        interval: float,
        vector_stores: VectorStoreWatch | None = None,
    ) -> None:
        self.index = index
        self.lease = lease
        self.settler = settler
        self.vector_stores = vector_stores
        self.interval = interval
        self.polls = 0
        """Objects looked at by this process (since start)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tenantgate-object-poller")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def _run(self) -> None:
        while True:
            try:
                if await self.lease.acquire():
                    await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("objects: polling failed (%s); trying again in %.0fs", type(exc).__name__, self.interval)
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> int:
        """Look at every object due now; returns how many."""
        due = await self.index.due(utcnow(), _BATCH)
        for row in due:
            await self.index.postpone(row.id, self.interval)
            try:
                if row.kind == "vector_store" and self.vector_stores is not None:
                    await self.vector_stores.poll(row)
                else:
                    await self.settler.poll(row)
            except Exception as exc:
                log.warning("objects: polling %s %s failed (%s)", row.kind, row.id, type(exc).__name__)
            self.polls += 1
        return len(due)
