"""A lease in the database that one process holds at a time: how a deployment of many processes runs one poller.

Taking or renewing it is one statement (insert, or update where it expired or is ours), so two processes cannot
both hold it; a holder that dies stops renewing and another takes over once ``ttl`` has passed. The database
rather than Redis because the work it guards (polling what the database lists) needs the database anyway, and so it
works the same without Redis. Holding it is an optimisation, not a correctness condition: everything the poller does
is idempotent, so two holders for a moment (a clock jump) only do some work twice.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.tenants.models import Lease, utcnow


def holder_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(3).hex()}"


class DatabaseLease:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], name: str, ttl: float, holder: str = "") -> None:
        self._sessions = sessions
        self.name = name
        self.ttl = ttl
        self.holder = holder or holder_name()

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = utcnow()
        values = {"name": self.name, "holder": self.holder, "expires_at": now + timedelta(seconds=self.ttl)}
        async with self._sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            insert = pg_insert(Lease) if dialect == "postgresql" else sqlite_insert(Lease)
            statement = insert.values(**values).on_conflict_do_update(
                index_elements=[Lease.name],
                set_={"holder": self.holder, "expires_at": values["expires_at"]},
                where=or_(Lease.expires_at < now, Lease.holder == self.holder),
            )
            result = await session.execute(statement.returning(Lease.holder))
            row = result.first()
        return row is not None and row[0] == self.holder

    async def release(self) -> None:
        """Give the lease up now (on shutdown), so another process takes over without waiting for it to expire."""
        async with self._sessions() as session, session.begin():
            row = await session.get(Lease, self.name)
            if row is not None and row.holder == self.holder:
                await session.delete(row)
