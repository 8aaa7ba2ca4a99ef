"""Shared pieces of the admin routes: read sessions, mutations, pagination parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.database import session_scope
from tenantgate.platform.admin.auth import AdminIdentity
from tenantgate.platform.context import request_id_of
from tenantgate.platform.deps import invalidation_of, sessions_of, settings_of
from tenantgate.tenants.operation import Actor, Operation

Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
After = Annotated[str | None, Query(description="The last id of the previous page")]


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncSession]:
    async with sessions_of(request)() as session:
        yield session


@asynccontextmanager
async def mutation(request: Request, identity: AdminIdentity) -> AsyncIterator[Operation]:
    """A transaction with its audit actor; after it commits, every process drops the affected cached keys."""
    actor = Actor(identity.token_id, identity.role.value, request_id_of(request.scope) or None)
    async with session_scope(sessions_of(request)) as session:
        operation = Operation(session, actor, settings_of(request).secret_key_bytes)
        yield operation
        await operation.log_invalidations()
    await invalidation_of(request).publish(operation.invalidations)
