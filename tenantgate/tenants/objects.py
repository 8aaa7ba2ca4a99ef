"""Which tenant created each object stored upstream: Responses API responses and their output items, files, uploads
and their parts, batches (what lists and polls need besides is in object_index.py).

All tenants share the platform's upstream account, so an id like ``resp_...`` is reachable by anyone who knows it.
The gateway records the owner of every id it sees created and answers 404 to everyone else.

**First owner wins**, everywhere an owner is kept: a record never replaces another tenant's. The in-process map
is checked first; then Redis (``SET NX``, so replicas agree at once) or, without Redis, the database; an id that
already belongs to someone else is a *conflict*: the caller's answer is refused and the attempt logged as a
security event (an upstream that names another tenant's id is a tenant's own endpoint lying, or a collision).
The database is written in batches off the request path; a batch that finds an id stored with another owner
(Redis lost its keys meanwhile) keeps the stored owner, corrects memory and Redis, and logs the conflict.

An owner also says which account holds the object: the platform's, or the tenant's own (its BYOK key or endpoint
for that upstream). A tenant-account object is only ever reached with that tenant's current credentials, so
removing a BYOK record can never turn one of its ids into a platform-account read.

An owner also says what the id names (its *kind*: ``file``, ``batch``, ``upload_part``...), as first recorded, so
a route expecting one kind answers an id of another, even the caller's own, as it answers an id that never existed
(proxy/stored.py ``owned``), without asking the upstream. Records made before kinds were kept are completed from
the database, which always had them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.models import UpstreamObject, utcnow
from tenantgate.wire.resp import RespClient

log = logging.getLogger("tenantgate.objects")
security = logging.getLogger("tenantgate.security")

_REDIS_TTL_SECONDS = 30 * 24 * 3600
_MEMORY_ENTRIES = 50_000
MISSING_SECONDS = 1.0
"""How long the stores' answer about an id that is not the asker's is reused in this process (see ``owner``)."""
_MISSING_ENTRIES = 50_000

Account = Literal["platform", "tenant"]


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: str
    upstream: str
    account: Account = "platform"
    api_key_id: str | None = None
    kind: str | None = field(default=None, compare=False)
    """What the id names (``file``, ``batch``, ``upload_part``...), as recorded; None in an owner being recorded,
    and in a record made before kinds were kept. Not part of who owns it (equality ignores it)."""

    def same_holder(self, other: Owner) -> bool:
        """Same tenant, upstream and account (the creating key may differ)."""
        return (self.tenant_id, self.upstream, self.account) == (other.tenant_id, other.upstream, other.account)

    def encode(self) -> str:
        return f"{self.tenant_id} {self.upstream} {self.account} {self.api_key_id or '-'} {self.kind or '-'}"

    @classmethod
    def decode(cls, text: str) -> Owner:
        parts = text.split(" ")
        tenant_id, upstream, account, key_id, kind = [*parts, *_DECODE_DEFAULTS[len(parts) :]][:5]
        holder: Account = "tenant" if account == "tenant" else "platform"
        return cls(tenant_id, upstream, holder, None if key_id == "-" else key_id, None if kind == "-" else kind)


_DECODE_DEFAULTS = ("", "", "platform", "-", "-")
"""What a shorter record means (one written before its later fields were kept)."""


class ObjectOwnership:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: RespClient | None,
        redis_prefix: str,
        flush_interval: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._prefix = f"{redis_prefix}:obj:"
        self._memory: OrderedDict[str, Owner] = OrderedDict()
        self._pending: dict[str, tuple[str, Owner]] = {}
        self._probed: OrderedDict[str, float] = OrderedDict()
        """Ids looked up in every store for someone not their owner (or nobody's), until when (monotonic) memory's
        answer is reused for them."""
        self._flush_interval = flush_interval
        self._task: asyncio.Task[None] | None = None
        self.conflicts = 0
        """Records refused because the id belonged to someone else (since start)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def record(self, object_id: str, kind: str, owner: Owner) -> Owner | None:
        """Make ``owner`` the owner of ``object_id`` unless someone else is; returns that someone else, or None."""
        if "\x00" in object_id:
            log.warning("objects: an upstream answer named an id with a NUL character; not recorded, so nobody's")
            return None
        owner = replace(owner, kind=kind)
        known = self._memory.get(object_id)
        if known is None:
            known = await self._claim_shared(object_id, owner)
        if known is not None and not known.same_holder(owner):
            self._conflict(object_id, kind, owner, known)
            self._remember(object_id, known)
            return known
        self._remember(object_id, known or owner)
        if known is None:
            self._pending[object_id] = (kind, owner)
        return None

    async def _claim_shared(self, object_id: str, owner: Owner) -> Owner | None:
        """The owner already recorded where all processes see it (Redis, else the database); claims it if none."""
        if self._redis is not None:
            try:
                key = self._prefix + object_id
                if await self._redis.execute("SET", key, owner.encode(), "NX", "EX", _REDIS_TTL_SECONDS):
                    return None
                value = await self._redis.execute("GET", key)
                return Owner.decode(value.decode() if isinstance(value, bytes) else str(value)) if value else None
            except Exception as exc:  # the database still has the final word when the batch is written
                log.warning("could not record object owner in redis: %s", type(exc).__name__)
        return await self._stored_owner(object_id)

    async def _stored_owner(self, object_id: str) -> Owner | None:
        async with self._sessions() as session:
            row = await session.get(UpstreamObject, object_id)
        return None if row is None else _owner_of(row)

    def _conflict(self, object_id: str, kind: str, claimant: Owner, owner: Owner) -> None:
        self.conflicts += 1
        security.warning(
            "security: an upstream answer named %s %s, which belongs to another tenant; refused "
            "(claimant tenant %s via upstream %r, %s account; owner tenant %s)",
            kind,
            object_id,
            claimant.tenant_id,
            claimant.upstream,
            claimant.account,
            owner.tenant_id,
        )

    async def owner(self, object_id: str, asker: str | None = None) -> Owner | None:
        """Who owns ``object_id``: from memory, else Redis, else the database.

        ``asker`` (the calling tenant, where a 404 is at stake) makes an id that is not the asker's cost the same
        whether someone else owns it or nobody does: Redis and the database are both asked, once per
        ``MISSING_SECONDS`` per id, then the answer of this process's memory is reused for that long. A 404 thus
        takes as long for a foreign id as for one that never existed, first probe or repeated. The asker's own ids
        are answered from memory when known, from Redis when not. A miss is kept only once the database confirmed
        it, and a record here is seen at once (memory is read first); an id another process creates meanwhile is
        seen here at most ``MISSING_SECONDS`` late."""
        if "\x00" in object_id:
            return None  # never recorded (a database text cannot hold it), so nobody's
        known = self._memory.get(object_id)
        if known is not None and (asker is None or known.tenant_id == asker):
            return known
        if self._probed_now(object_id):
            return self._memory.get(object_id)
        owner: Owner | None = None
        if self._redis is not None:
            try:
                value = await self._redis.execute("GET", self._prefix + object_id)
            except Exception as exc:
                log.warning("could not read object owner from redis: %s", type(exc).__name__)
                value = None
            if value:
                owner = Owner.decode(value.decode() if isinstance(value, bytes) else str(value))
        if owner is None or owner.kind is None or (asker is not None and owner.tenant_id != asker):
            # Nobody's so far, a record from before kinds were kept (the database has its kind), or someone else's
            # (asked all the same, so that costs what a miss costs).
            stored = await self._stored_owner(object_id)
            if stored is not None and (owner is None or stored.same_holder(owner)):
                owner = stored
        if owner is not None:
            self._remember(object_id, owner)
        if owner is None or (asker is not None and owner.tenant_id != asker):
            self._probed[object_id] = time.monotonic() + MISSING_SECONDS
            self._probed.move_to_end(object_id)
            if len(self._probed) > _MISSING_ENTRIES:
                self._probed.popitem(last=False)
        return self._memory.get(object_id) if owner is None else owner

    def _probed_now(self, object_id: str) -> bool:
        until = self._probed.get(object_id)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._probed[object_id]
        return False

    def _remember(self, object_id: str, owner: Owner) -> None:
        self._memory[object_id] = owner
        self._memory.move_to_end(object_id)
        if len(self._memory) > _MEMORY_ENTRIES:
            self._memory.popitem(last=False)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            async with self._sessions() as session, session.begin():
                rows = (await session.execute(select(UpstreamObject).where(UpstreamObject.id.in_(batch)))).scalars()
                existing = {row.id: _owner_of(row) for row in rows}
                session.add_all(
                    UpstreamObject(
                        id=object_id,
                        kind=kind,
                        tenant_id=owner.tenant_id,
                        upstream=owner.upstream,
                        account=owner.account,
                        api_key_id=owner.api_key_id,
                        created_at=utcnow(),
                    )
                    for object_id, (kind, owner) in batch.items()
                    if object_id not in existing
                )
        except Exception as exc:
            log.warning("could not write object owners (%d), will retry: %s", len(batch), type(exc).__name__)
            self._pending = {**batch, **self._pending}
            return
        for object_id, stored in existing.items():
            kind, claimed = batch[object_id]
            if not stored.same_holder(claimed):
                # Redis had lost the first owner's record: the database's owner stands everywhere.
                self._conflict(object_id, kind, claimed, stored)
                self._remember(object_id, stored)
                await self._restore_shared(object_id, stored)

    async def _restore_shared(self, object_id: str, owner: Owner) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.execute("SET", self._prefix + object_id, owner.encode(), "EX", _REDIS_TTL_SECONDS)
        except Exception as exc:
            log.warning("could not correct object owner in redis: %s", type(exc).__name__)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()


def _owner_of(row: UpstreamObject) -> Owner:
    account: Account = "tenant" if row.account == "tenant" else "platform"
    return Owner(row.tenant_id, row.upstream, account, row.api_key_id, row.kind)
