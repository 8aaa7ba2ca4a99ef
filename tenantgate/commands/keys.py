"""``tenantgate keys ...``: the CLI side of the admin API's key routes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenantgate.commands.common import (
    After,
    Clear,
    JsonFlag,
    Limit,
    MaxConcurrency,
    Models,
    Rpd,
    Rpm,
    Tpm,
    cleared,
    emit,
    given,
    limits_text,
    list_lines,
    mutate,
    run,
    run_in_session,
    validated,
)

if TYPE_CHECKING:
    from tenantgate.platform.admin.schemas import KeyOut, KeyRotated, ListOf
    from tenantgate.tenants.key_service import CreatedKey, KeyState
    from tenantgate.tenants.operation import Operation

app = typer.Typer(no_args_is_help=True, help="Manage tenant API keys")

KeyId = Annotated[str, typer.Argument(help="Key id")]
Expires = Annotated[datetime | None, typer.Option("--expires-at", help="Refuse the key after this time (UTC)")]


def _line(key: KeyOut) -> str:
    from tenantgate.tenants.models import RATE_LIMIT_FIELDS

    expires = f"  expires={key.expires_at.isoformat()}" if key.expires_at else ""
    used = key.last_used_at.isoformat() if key.last_used_at else "never"
    return (
        f"{key.id}  {key.prefix}...  {key.name}  {key.status}  tenant={key.tenant_id}  last_used={used}{expires}"
        f"  {limits_text(key, RATE_LIMIT_FIELDS)}"
    ).rstrip()


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id")],
    name: Annotated[str, typer.Option(help="Key name")] = "default",
    rpm: Rpm = None,
    tpm: Tpm = None,
    rpd: Rpd = None,
    max_concurrency: MaxConcurrency = None,
    model: Models = None,
    expires_at: Expires = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key. The plaintext is printed once and never stored. --json prints {"id", "key", "prefix",
    "tenant_id"}."""
    from tenantgate.platform.admin.schemas import KeyCreate
    from tenantgate.tenants import key_service, service

    body = validated(
        KeyCreate,
        given(
            name=name,
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            max_concurrency=max_concurrency,
            allowed_models=model,
            expires_at=expires_at,
        ),
    )

    async def work(op: Operation) -> CreatedKey:
        owner = await service.live_tenant(op.session, tenant)
        return await key_service.create_key(op, tenant=owner, **body.model_dump())

    created = run(lambda s: mutate(s, work))
    key = created.key
    emit(
        as_json,
        {"id": key.id, "key": created.plaintext, "prefix": key.prefix, "tenant_id": key.tenant_id},
        f"created key {key.id} for tenant {key.tenant_id}\n\n    {created.plaintext}\n\n"
        "Store it now: it is not shown again.",
    )


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys")] = None,
    name: Annotated[str | None, typer.Option(help="Only keys with this name")] = None,
    status: Annotated[str | None, typer.Option(help="active, expired or revoked")] = None,
    limit: Limit = 20,
    after: After = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (prefix, name, status, created, last used, expiry), newest first."""
    from tenantgate.platform.admin.schemas import KeyOut, ListOf, page_fields
    from tenantgate.tenants import key_service, service

    if status not in (None, "active", "expired", "revoked"):
        raise typer.BadParameter("must be active, expired or revoked", param_hint="--status")
    state: KeyState | None = status  # type: ignore[assignment]

    async def query(session: Any) -> ListOf[KeyOut]:
        if tenant is not None:
            await service.get_tenant(session, tenant)
        page = await key_service.list_keys(session, tenant_id=tenant, name=name, state=state, limit=limit, after=after)
        return ListOf[KeyOut](**page_fields([KeyOut.of(k) for k in page.items], page.has_more))

    result = run_in_session(query)
    emit(as_json, result, list_lines(result.data, _line, result.has_more))


@app.command("get")
def get(key_id: KeyId, as_json: JsonFlag = False) -> None:
    """Show a key (never its plaintext)."""
    from tenantgate.platform.admin.schemas import KeyOut
    from tenantgate.tenants import key_service

    async def read(session: Any) -> KeyOut:
        return KeyOut.of(await key_service.get_key(session, key_id))

    key = run_in_session(read)
    emit(as_json, key, _line(key))


@app.command("update")
def update(
    key_id: KeyId,
    name: Annotated[str | None, typer.Option(help="New name")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    rpd: Rpd = None,
    max_concurrency: MaxConcurrency = None,
    model: Models = None,
    expires_at: Expires = None,
    clear: Clear = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a key's name, limits, allowed models or expiry (only the options given)."""
    from tenantgate.platform.admin.schemas import KeyOut, KeyUpdate
    from tenantgate.tenants import key_service
    from tenantgate.tenants.models import RATE_LIMIT_FIELDS

    values = cleared(clear, (*RATE_LIMIT_FIELDS, "expires_at"))
    values |= given(
        name=name,
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        max_concurrency=max_concurrency,
        allowed_models=model,
        expires_at=expires_at,
    )
    changes = validated(KeyUpdate, values).changes()

    async def work(op: Operation) -> KeyOut:
        return KeyOut.of(await key_service.update_key(op, await key_service.get_key(op.session, key_id), changes))

    key = run(lambda s: mutate(s, work))
    emit(as_json, key, _line(key))


@app.command("rotate")
def rotate(
    key_id: KeyId,
    grace_seconds: Annotated[float, typer.Option(help="How long the old key keeps working")] = 3600,
    expires_at: Expires = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a replacement key (plaintext printed once); the old key stops after the grace period."""
    from tenantgate.platform.admin.schemas import KeyOut, KeyRotate, KeyRotated
    from tenantgate.tenants import key_service

    body = validated(KeyRotate, given(grace_seconds=grace_seconds, expires_at=expires_at))

    async def work(op: Operation) -> KeyRotated:
        old = await key_service.get_key(op.session, key_id)
        created, old = await key_service.rotate_key(
            op, old, grace_seconds=body.grace_seconds, expires_at=body.expires_at
        )
        return KeyRotated(**KeyOut.of(created.key).model_dump(), key=created.plaintext, previous=KeyOut.of(old))

    rotated = run(lambda s: mutate(s, work))
    until = rotated.previous.expires_at.isoformat() if rotated.previous.expires_at else "now"
    emit(
        as_json,
        rotated,
        f"created key {rotated.id} replacing {key_id} (which works until {until})\n\n    {rotated.key}\n\n"
        "Store it now: it is not shown again.",
    )


@app.command("revoke")
def revoke(key_id: KeyId, as_json: JsonFlag = False) -> None:
    """Revoke a key (refused by running servers within a second). --json prints {"id", "status"}."""
    from tenantgate.platform.admin.schemas import KeyOut
    from tenantgate.tenants import key_service

    async def work(op: Operation) -> KeyOut:
        return KeyOut.of(await key_service.revoke_key(op, await key_service.get_key(op.session, key_id)))

    key = run(lambda s: mutate(s, work))
    emit(as_json, {"id": key.id, "status": key.status}, f"revoked key {key.id}")
