"""Shared pieces of the admin routes: the runtime, read sessions, mutations, pagination parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.database import session_scope
from tenantgate.platform.admin.auth import AdminIdentity
from tenantgate.platform.context import request_id_of
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants.operation import Actor, Operation

Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
After = Annotated[str | None, Query(description="The last id of the previous page")]


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncSession]:
    async with runtime_of(request).sessions() as session:
        yield session


@asynccontextmanager
async def mutation(request: Request, identity: AdminIdentity) -> AsyncIterator[Operation]:
    """A transaction with its audit actor; after it commits, every process drops the affected cached keys."""
    runtime = runtime_of(request)
    actor = Actor(identity.token_id, identity.role.value, request_id_of(request.scope) or None)
    async with session_scope(runtime.sessions) as session:
        operation = Operation(session, actor, runtime.settings.secret_key_bytes)
        yield operation
        await operation.log_invalidations()
    await runtime.invalidation.publish(operation.invalidations)
