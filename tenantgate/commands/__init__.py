"""Management commands of the ``tenantgate`` CLI: tenants, plans, keys, admin tokens, audit, apply."""

from __future__ import annotations

import typer

from tenantgate.commands import apply, audit, keys, plans, tenants, tokens


def register(app: typer.Typer) -> None:
    app.add_typer(tenants.app, name="tenants")
    app.add_typer(plans.app, name="plans")
    app.add_typer(keys.app, name="keys")
    app.add_typer(tokens.app, name="tokens")
    app.command("audit")(audit.audit)
    app.command("apply")(apply.apply)
