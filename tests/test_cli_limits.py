"""The CLI sets every limit a key or tenant can have; the server enforces what it set."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from tenantgate import database
from tenantgate.cli import app
from tenantgate.tenants.models import ApiKey, Tenant
from tests.conftest import SECRET_KEY


def _invoke(env: dict[str, str], *args: str) -> dict[str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


async def _stored(url: str, tenant_id: str, key_id: str) -> tuple[Tenant, ApiKey]:
    engine = database.create_engine(url)
    try:
        async with database.create_sessionmaker(engine)() as session:
            tenant, key = await session.get(Tenant, tenant_id), await session.get(ApiKey, key_id)
            assert tenant is not None and key is not None
            return tenant, key
    finally:
        await engine.dispose()


def test_limits_flags_are_stored(database_url: str) -> None:
    env = {"TENANTGATE_DATABASE_URL": database_url, "TENANTGATE_SECRET_KEY": SECRET_KEY, "TENANTGATE_ENV": "production"}
    tenant = _invoke(
        env,
        *("tenants", "create", "--name", "limited-co", "--rpm", "60", "--tpm", "90000", "--rpd", "5000"),
        *("--max-concurrency", "8", "--monthly-token-quota", "1000000", "--monthly-budget-usd", "25.50", "--json"),
    )
    key = _invoke(
        env,
        *("keys", "create", "--tenant", tenant["id"], "--rpm", "10", "--rpd", "100", "--max-concurrency", "2"),
        "--json",
    )
    stored_tenant, stored_key = asyncio.run(_stored(database_url, tenant["id"], key["id"]))
    assert (stored_tenant.rpm, stored_tenant.tpm, stored_tenant.rpd, stored_tenant.max_concurrency) == (
        60,
        90000,
        5000,
        8,
    )
    assert stored_tenant.monthly_token_quota == 1_000_000 and str(stored_tenant.monthly_budget_usd) == "25.500000"
    assert (stored_key.rpm, stored_key.tpm, stored_key.rpd, stored_key.max_concurrency) == (10, None, 100, 2)


def test_a_budget_that_is_not_a_number_is_refused(database_url: str) -> None:
    env = {"TENANTGATE_DATABASE_URL": database_url, "TENANTGATE_SECRET_KEY": SECRET_KEY, "TENANTGATE_ENV": "production"}
    result = CliRunner().invoke(app, ["tenants", "create", "--name", "x", "--monthly-budget-usd", "lots"], env=env)
    assert result.exit_code == 2
    assert "monthly_budget_usd" in result.stderr and "valid decimal" in result.stderr
