"""Management commands of the ``tenantgate`` CLI: tenants, plans, keys, admin tokens, prices, audit, apply, usage."""

from __future__ import annotations

import typer

from tenantgate.commands import apply, audit, keys, plans, prices, tenants, tokens, usage


def register(app: typer.Typer) -> None:
    app.add_typer(tenants.app, name="tenants")
    app.add_typer(plans.app, name="plans")
    app.add_typer(keys.app, name="keys")
    app.add_typer(tokens.app, name="tokens")
    app.add_typer(prices.app, name="prices")
    app.command("audit")(audit.audit)
    app.command("apply")(apply.apply)
    app.add_typer(usage.app, name="usage")
