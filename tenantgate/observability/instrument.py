"""Spans for Redis commands and database statements run on behalf of a sampled request.

Both wrappers are per instance (the runtime's Redis client, the runtime's engine), not patches of the libraries,
and both look at the request's sampling decision before doing anything else: work done for unsampled requests or
outside any request (background flushes, health checks) costs one context-variable read and makes no span.
Only the command or statement name and the parameterised SQL are recorded, never keys' values or parameters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantgate.observability.context import CURRENT
from tenantgate.observability.tracing import Tracing
from tenantgate.wire.resp import RespClient

_DB_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql"}
_STATE_KEY = "_tenantgate_span"


def instrument_redis(client: RespClient, tracing: Tracing) -> None:
    """Spans for the commands of ``client.execute`` (stored responses' owners, invalidation messages) and for its
    server check (readiness). The limiter's
    script calls on the same client go through ``evalsha_command`` and ``fire``, which are not wrapped: its one
    call per request shows as the limiter."""
    endpoint = client.endpoint
    base: dict[str, Any] = {"db.system.name": "redis", "db.namespace": str(endpoint.db)}
    if endpoint.unix_path is None:
        base["server.address"] = endpoint.host
        base["server.port"] = endpoint.port
    execute: Callable[..., Awaitable[Any]] = client.execute

    async def traced_execute(*args: Any, **options: Any) -> Any:
        state = CURRENT.get()
        if state is None or not state.sampled:
            return await execute(*args, **options)
        command = str(args[0]).upper() if args else "COMMAND"
        started = time.perf_counter()
        error: str | None = None
        try:
            return await execute(*args, **options)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            tracing.child_span(
                state, command, {**base, "db.operation.name": command}, started, time.perf_counter(), error
            )

    client.execute = traced_execute  # type: ignore[method-assign]
    check: Callable[[], Awaitable[None]] = client.check

    async def traced_check() -> None:
        """The server check (ROLE and INFO cluster, one round trip: readiness) as one span named ROLE."""
        state = CURRENT.get()
        if state is None or not state.sampled:
            await check()
            return
        started = time.perf_counter()
        error: str | None = None
        try:
            await check()
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            tracing.child_span(
                state, "ROLE", {**base, "db.operation.name": "ROLE"}, started, time.perf_counter(), error
            )

    client.check = traced_check  # type: ignore[method-assign]


def instrument_engine(engine: AsyncEngine, tracing: Tracing) -> None:
    url = engine.url
    system = _DB_SYSTEMS.get(url.get_backend_name(), url.get_backend_name())
    base: dict[str, Any] = {"db.system.name": system}
    if url.database:
        base["db.namespace"] = url.database.rsplit("/", 1)[-1] if system == "sqlite" else url.database
    if url.host:
        base["server.address"] = url.host
        if url.port:
            base["server.port"] = url.port
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        state = CURRENT.get()
        if state is not None and state.sampled and context is not None:
            setattr(context, _STATE_KEY, (state, time.perf_counter()))

    def _finish(context: Any, statement: str, error: str | None) -> None:
        started = getattr(context, _STATE_KEY, None) if context is not None else None
        if started is None:
            return
        setattr(context, _STATE_KEY, None)
        state, began = started
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "QUERY"
        name = f"{operation} {base['db.namespace']}" if "db.namespace" in base else operation
        attributes = {**base, "db.operation.name": operation, "db.query.text": statement}
        tracing.child_span(state, name, attributes, began, time.perf_counter(), error)

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        _finish(context, statement, None)

    @event.listens_for(sync_engine, "handle_error")
    def _error(exception_context: Any) -> None:
        _finish(
            exception_context.execution_context,
            exception_context.statement or "",
            type(exception_context.original_exception).__name__,
        )
