"""``tenantgate tokens ...``: named admin API tokens (the CLI side of /admin/tokens).

The CLI reaches the database directly, so it can create the first named token when no bootstrap token is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenantgate.commands.common import After, JsonFlag, Limit, emit, list_lines, mutate, run, run_in_session, validated
from tenantgate.tenants.enums import AdminRole

if TYPE_CHECKING:
    from tenantgate.platform.admin.schemas import AdminTokenCreated, AdminTokenOut, ListOf
    from tenantgate.tenants.operation import Operation

app = typer.Typer(no_args_is_help=True, help="Manage admin API tokens")


def _line(token: AdminTokenOut) -> str:
    state = f"revoked {token.revoked_at.isoformat()}" if token.revoked_at else "active"
    return f"{token.id}  {token.prefix}...  {token.name}  {token.role.value}  {state}"


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="What the token is for")],
    role: Annotated[
        AdminRole,
        typer.Option("--role", help="admin (everything), billing (read-only) or tenant (one tenant's console)"),
    ],
    tenant: Annotated[str | None, typer.Option("--tenant", help="The tenant id of a tenant token")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an admin token; its plaintext is printed once."""
    from tenantgate.platform.admin.schemas import AdminTokenCreate, AdminTokenCreated, AdminTokenOut
    from tenantgate.tenants import admin_tokens

    body = validated(AdminTokenCreate, {"name": name, "role": role, "tenant_id": tenant})

    async def work(op: Operation) -> AdminTokenCreated:
        created = await admin_tokens.create_token(op, name=body.name, role=body.role, tenant_id=body.tenant_id)
        return AdminTokenCreated(**AdminTokenOut.model_validate(created.token).model_dump(), token=created.plaintext)

    token = run(lambda s: mutate(s, work))
    emit(
        as_json,
        token,
        f"created {token.role.value} token {token.id} ({token.name})\n\n    {token.token}\n\n"
        "Store it now: it is not shown again.",
    )


@app.command("list")
def list_(limit: Limit = 100, after: After = None, as_json: JsonFlag = False) -> None:
    """List admin tokens (never their plaintexts)."""
    from tenantgate.platform.admin.schemas import AdminTokenOut, ListOf, page_fields
    from tenantgate.tenants import admin_tokens

    async def query(session: Any) -> ListOf[AdminTokenOut]:
        page = await admin_tokens.list_tokens(session, limit=limit, after=after)
        data = [AdminTokenOut.model_validate(t) for t in page.items]
        return ListOf[AdminTokenOut](**page_fields(data, page.has_more))

    result = run_in_session(query)
    emit(as_json, result, list_lines(result.data, _line, result.has_more))


@app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="Admin token id")], as_json: JsonFlag = False) -> None:
    """Revoke an admin token (refused from its next request on)."""
    from tenantgate.platform.admin.schemas import AdminTokenOut
    from tenantgate.tenants import admin_tokens

    async def work(op: Operation) -> AdminTokenOut:
        token = await admin_tokens.revoke_token(op, await admin_tokens.get_token(op.session, token_id))
        return AdminTokenOut.model_validate(token)

    token = run(lambda s: mutate(s, work))
    emit(as_json, token, f"revoked admin token {token.id}")
