"""What every management command shares: settings, sessions, mutations with audit and invalidation, output.

Commands work on the database directly, through the same lifecycle functions and schemas as the admin API, so
their ``--json`` output has the API's shapes, their validation the API's messages, and their changes land in the
audit log (actor ``cli``) and reach running servers like the API's.

The command modules import the gateway (SQLAlchemy, the schemas, the services) inside the functions that use it:
typer builds every command to answer ``--help``, which then loads nothing but typer (tests/test_cli_help.py).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel  # typer itself is built on pydantic: no cost

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tenantgate.settings import Settings
    from tenantgate.tenants.invalidation import Invalidation
    from tenantgate.tenants.operation import Actor, Operation

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout")]


def load_settings(*, dev_setup: bool = True) -> Settings:
    """The settings; with ``dev_setup``, over the file ``./scripts/serve`` keeps beside its database (settings.py).

    ``serve`` passes False: a server is in dev mode only when told so (TENANTGATE_ENV=dev), never by a file.
    """
    from pydantic import ValidationError

    from tenantgate.settings import Settings

    try:
        return Settings.for_command() if dev_setup else Settings()
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"configuration error: {error['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message[:1].lower()}{message[1:]}", err=True)
    return typer.Exit(code)


def run(factory: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Run one command's coroutine; lifecycle errors become a message on stderr and exit status 1."""
    import asyncio

    from tenantgate.platform.errors import GatewayError

    settings = load_settings()
    try:
        return asyncio.run(factory(settings))
    except GatewayError as error:
        raise fail(error.message) from None


async def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from tenantgate import database

    engine = database.create_engine(settings.database_url)
    try:
        async with database.session_scope(database.create_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def run_in_session(query: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run a read-only command: ``query`` in one database session."""
    return run(lambda settings: with_session(settings, query))


async def publish_invalidations(settings: Settings, invalidations: list[Invalidation]) -> None:
    """Tell running servers that share Redis which cached keys to drop (the others read the invalidation log)."""
    if not invalidations or not settings.redis_url:
        return
    from tenantgate.tenants.invalidation import channel_name, publish
    from tenantgate.wire.resp import RespClient

    redis = RespClient.from_url(settings.redis_url, connect_timeout=2, stall_timeout=2)
    try:
        await publish(redis, channel_name(settings.redis_prefix), invalidations)
    finally:
        await redis.aclose()


async def mutate(settings: Settings, work: Callable[[Operation], Awaitable[T]], actor: Actor | None = None) -> T:
    """``work`` in one transaction, audited as ``actor`` (default: ``cli``); running servers hear of the change."""
    from tenantgate.tenants.operation import CLI_ACTOR, Operation

    operation: Operation | None = None

    async def in_session(session: AsyncSession) -> T:
        nonlocal operation
        operation = Operation(session, actor or CLI_ACTOR, settings.secret_key_bytes)
        result = await work(operation)
        await operation.log_invalidations()
        return result

    result = await with_session(settings, in_session)
    assert operation is not None
    await publish_invalidations(settings, operation.invalidations)
    return result


def validated(model: type[M], values: dict[str, Any]) -> M:
    """Command-line values checked by the admin API's schema, with its messages."""
    from pydantic import ValidationError

    from tenantgate.platform.errors import _validation_message

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message, _ = _validation_message(list(exc.errors()))
        raise fail(f"invalid value: {message}", 2) from None


def emit(as_json: bool, payload: dict[str, Any] | BaseModel, human: str) -> None:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    typer.echo(json.dumps(payload) if as_json else human)


def given(**options: Any) -> dict[str, Any]:
    """The options that were given on the command line (None = not given)."""
    return {name: value for name, value in options.items() if value is not None}


def cleared(fields: list[str] | None, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``--clear rpm --clear allowed_models``: set those overrides back to null (inherit)."""
    result: dict[str, Any] = {}
    for field in fields or []:
        name = field.replace("-", "_")
        if name not in allowed:
            raise fail(f"--clear takes one of: {', '.join(allowed)}", 2)
        result[name] = None
    return result


# Limit options, shared by plans, tenants and keys; values are checked by the API schemas.
Rpm = Annotated[int | None, typer.Option("--rpm", help="Requests per minute")]
Tpm = Annotated[int | None, typer.Option("--tpm", help="Tokens per minute")]
Rpd = Annotated[int | None, typer.Option("--rpd", help="Requests per day")]
MaxConcurrency = Annotated[int | None, typer.Option("--max-concurrency", help="Requests in flight at once")]
Models = Annotated[list[str] | None, typer.Option("--model", help="An allowed model (repeat the option for several)")]
TokenQuota = Annotated[int | None, typer.Option("--monthly-token-quota", help="Tokens per calendar month")]
Budget = Annotated[str | None, typer.Option("--monthly-budget-usd", help="Spend per calendar month, USD")]
Clear = Annotated[
    list[str] | None, typer.Option("--clear", help="Unset a limit (inherit it again); repeatable, e.g. --clear rpm")
]
Limit = Annotated[int, typer.Option("--limit", min=1, max=100, help="Page size")]
After = Annotated[str | None, typer.Option("--after", help="The last id of the previous page")]


def list_lines(data: list[Any], line: Callable[[Any], str], has_more: bool) -> str:
    lines = [line(item) for item in data] or ["(none)"]
    if has_more and data:
        lines.append(f"... more after {data[-1].id}")
    return "\n".join(lines)


def limits_text(obj: Any, fields: tuple[str, ...]) -> str:
    return ", ".join(f"{field}={value}" for field in fields if (value := getattr(obj, field)) is not None)
