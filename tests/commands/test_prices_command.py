"""``tenantgate prices``: the CLI side of /admin/prices, same shapes and validation, audited as ``cli``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.commands.conftest import Invoke


def test_price_commands(cli: Invoke) -> None:
    tenant = cli("tenants", "create", "--name", "priced", "--json")
    later = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    created = cli(
        "prices", "set", "gpt-4o-mini", "--input", "0.12", "--output", "0.5", "--cached-input", "0.06",
        "--tenant", tenant["id"], "--effective-from", later.isoformat(), "--json",
    )  # fmt: skip
    assert (created["scope"], created["tenant_id"], created["model"]) == ("tenant", tenant["id"], "gpt-4o-mini")
    assert (created["input_per_1m"], created["cached_input_per_1m"], created["output_per_1m"]) == (
        "0.12",
        "0.06",
        "0.5",
    )
    assert datetime.fromisoformat(created["effective_from"]) == later
    everyone = cli("prices", "set", "llama-3", "--input", "0.2", "--output", "0.2", "--json")
    assert everyone["scope"] == "global"

    assert cli("prices", "get", created["id"], "--json") == created
    assert [p["id"] for p in cli("prices", "list", "--json")["data"]] == [everyone["id"], created["id"]]
    assert [p["id"] for p in cli("prices", "list", "--scope", "tenant", "--json")["data"]] == [created["id"]]
    human = cli("prices", "list", "--tenant", tenant["id"])
    assert f"{created['id']}  gpt-4o-mini  tenant:{tenant['id']}  input=0.12 cached_input=0.06 output=0.5" in human

    deleted = cli("prices", "delete", created["id"], "--json")
    assert deleted == {"id": created["id"], "object": "price_override", "deleted": True}
    assert "no price override with id" in cli("prices", "get", created["id"], expect=1).stderr
    entries = cli("audit", "--target-type", "price_override", "--json")["data"]
    assert [(e["action"], e["actor_id"]) for e in entries] == [
        ("price_override.delete", "cli"),
        ("price_override.create", "cli"),
        ("price_override.create", "cli"),
    ]


def test_price_command_validation(cli: Invoke) -> None:
    negative = cli("prices", "set", "gpt-4o", "--input", "-1", "--output", "1", expect=2)
    assert "input_per_1m: Input should be greater than or equal to 0" in negative.stderr
    huge = cli("prices", "set", "gpt-4o", "--input", "1", "--output", "2500000", expect=2)
    assert "output_per_1m: Input should be less than or equal to 10000" in huge.stderr
    past = cli("prices", "set", "gpt-4o", "--input", "1", "--output", "1", "--effective-from", "2020-01-01", expect=1)
    assert "in the past" in past.stderr
    assert "--scope takes one of" in cli("prices", "list", "--scope", "nobody", expect=2).stderr
    assert cli("prices", "list", "--json")["data"] == []
