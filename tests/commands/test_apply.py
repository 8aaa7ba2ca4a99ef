"""`tenantgate apply`: idempotent, dry-run, prune, key plaintexts once (or to a file), readable errors."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from tenantgate import database
from tenantgate.tenants.invalidation import Invalidation
from tenantgate.tenants.invalidation_log import InvalidationLog
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.repository import principal_for_key_hash
from tests.commands.conftest import Invoke
from tests.conftest import SECRET_KEY

ISSUE_EXAMPLE = """
plans:
  - name: starter
    rpm: 60
    tpm: 10000
tenants:
  - name: yaml-co
    plan: starter
    keys:
      - name: main
"""


def _write(tmp_path: Path, text: str, name: str = "tenants.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _principal(database_url: str, plaintext: str):  # type: ignore[no-untyped-def]
    async def lookup():  # type: ignore[no-untyped-def]
        engine = database.create_engine(database_url)
        try:
            async with database.create_sessionmaker(engine)() as session:
                return await principal_for_key_hash(session, hash_key(SECRET_KEY.encode(), plaintext))
        finally:
            await engine.dispose()

    return asyncio.run(lookup())


def test_issue_example_applies_once_and_then_changes_nothing(cli: Invoke, tmp_path: Path, database_url: str) -> None:
    path = _write(tmp_path, ISSUE_EXAMPLE)
    planned = cli("apply", path, "--dry-run")
    assert "+ plan starter  rpm=60 tpm=10000" in planned
    assert "+ tenant yaml-co  plan=starter" in planned and "+ key yaml-co/main" in planned
    assert "dry run: 3 changes, nothing applied" in planned and "tg-" not in planned
    assert cli("tenants", "list", "--json")["data"] == []  # the dry run wrote nothing

    applied = cli("apply", path, "--json")
    assert [(c["action"], c["kind"], c["name"]) for c in applied["changes"]] == [
        ("create", "plan", "starter"),
        ("create", "tenant", "yaml-co"),
        ("create", "key", "yaml-co/main"),
    ]
    [new_key] = applied["new_keys"]
    assert (new_key["tenant"], new_key["name"]) == ("yaml-co", "main") and new_key["key"].startswith("tg-")
    principal = _principal(database_url, new_key["key"])
    assert principal is not None and principal.tenant_name == "yaml-co"
    assert (principal.tenant_limits.rpm, principal.tenant_limits.tpm) == (60, 10_000)

    assert cli("apply", path, "--dry-run").strip() == "no changes"
    assert cli("apply", path).strip() == "no changes"
    again = cli("apply", path, "--json")
    assert again == {"dry_run": False, "changes": [], "new_keys": []}
    audit = cli("audit", "--actor", "apply", "--json")["data"]
    assert sorted(e["action"] for e in audit) == ["key.create", "plan.create", "tenant.create"]


def test_changes_are_applied_and_shown(cli: Invoke, tmp_path: Path) -> None:
    cli("apply", _write(tmp_path, ISSUE_EXAMPLE))
    changed = ISSUE_EXAMPLE.replace("rpm: 60", "rpm: 120").replace(
        "      - name: main", "      - name: main\n        allowed_models: [gpt-4o-mini]\n    suspended: true"
    )
    path = _write(tmp_path, changed, "changed.yaml")
    plan = cli("apply", path, "--dry-run")
    assert "~ plan starter  rpm: 60 -> 120" in plan
    assert "~ key yaml-co/main  allowed_models: none -> gpt-4o-mini" in plan
    assert "~ tenant yaml-co  (suspend)" in plan
    cli("apply", path)
    tenant = cli("tenants", "list", "--json", "--status", "suspended")["data"][0]
    assert tenant["name"] == "yaml-co"
    assert cli("plans", "list", "--json")["data"][0]["rpm"] == 120
    assert cli("apply", path).strip() == "no changes"
    # A limit removed from the file is unset: the file is the desired state.
    cli("apply", _write(tmp_path, ISSUE_EXAMPLE.replace("    tpm: 10000\n", ""), "no-tpm.yaml"))
    assert cli("plans", "list", "--json")["data"][0]["tpm"] is None


def test_prune_removes_only_what_the_file_no_longer_declares(cli: Invoke, tmp_path: Path) -> None:
    full = (
        ISSUE_EXAMPLE
        + """      - name: spare
  - name: other-co
    keys:
      - name: main
"""
    )
    cli("apply", _write(tmp_path, full))
    unmanaged = cli("tenants", "create", "--name", "made-by-hand", "--json")
    smaller = _write(tmp_path, ISSUE_EXAMPLE, "smaller.yaml")

    assert "no changes" in cli("apply", smaller)  # without --prune nothing is removed
    plan = cli("apply", smaller, "--prune", "--dry-run")
    for line in ("- key yaml-co/spare  (revoke)", "- tenant other-co  (delete)", "- tenant made-by-hand  (delete)"):
        assert line in plan
    cli("apply", smaller, "--prune")
    live = {t["name"] for t in cli("tenants", "list", "--json")["data"]}
    assert live == {"yaml-co"}
    assert cli("tenants", "get", unmanaged["id"], "--json")["status"] == "deleted"
    keys = cli("keys", "list", "--json", "--status", "active")["data"]
    assert [k["name"] for k in keys] == ["main"]
    assert cli("apply", smaller, "--prune").strip() == "no changes"


def test_what_an_apply_revokes_is_in_the_invalidation_log_and_a_dry_run_writes_none(
    cli: Invoke, tmp_path: Path, database_url: str
) -> None:
    """Servers without Redis learn of apply's changes from the log, like of the API's and the other commands'."""
    cli("apply", _write(tmp_path, ISSUE_EXAMPLE + "      - name: spare\n"))
    [spare] = [k for k in cli("keys", "list", "--json")["data"] if k["name"] == "spare"]
    smaller = _write(tmp_path, ISSUE_EXAMPLE, "smaller.yaml")

    async def read_after(*args: str) -> list[Invalidation]:
        engine = database.create_engine(database_url)
        try:
            reader = InvalidationLog(database.create_sessionmaker(engine))
            await reader.read()
            await asyncio.to_thread(cli, *args)
            return await reader.read()
        finally:
            await engine.dispose()

    assert asyncio.run(read_after("apply", smaller, "--prune", "--dry-run")) == []
    assert asyncio.run(read_after("apply", smaller, "--prune")) == [Invalidation("key", spare["id"])]


def test_new_keys_can_go_to_a_private_file(cli: Invoke, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.jsonl"
    output = cli("apply", _write(tmp_path, ISSUE_EXAMPLE), "--keys-file", str(keys_file))
    assert "tg-" not in output and f"wrote 1 new key(s) to {keys_file}" in output
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    [line] = keys_file.read_text().splitlines()
    record = json.loads(line)
    assert (record["tenant"], record["name"]) == ("yaml-co", "main") and record["key"].startswith("tg-")


def test_rotated_key_still_counts_as_the_declared_key(cli: Invoke, tmp_path: Path) -> None:
    path = _write(tmp_path, ISSUE_EXAMPLE)
    cli("apply", path)
    key = cli("keys", "list", "--json")["data"][0]
    cli("keys", "rotate", key["id"], "--grace-seconds", "600", "--json")
    assert cli("apply", path, "--prune").strip() == "no changes"


def test_invalid_files_are_refused_readably(cli: Invoke, tmp_path: Path) -> None:
    cases = {
        "plans:\n  - name: a\n    rpn: 5\n": "plans[0].rpn: Extra inputs are not permitted",
        "tenants:\n  - name: a\n    keys:\n      - name: k\n        rpm: -1\n": "tenants[0].keys[0].rpm",
        "tenants:\n  - name: a\n  - name: a\n": "tenant 'a' is declared twice",
        "plans: [\n": "is not valid YAML",
    }
    for text, message in cases.items():
        result = cli("apply", _write(tmp_path, text), expect=2)
        assert message in result.stderr, result.stderr
    missing_plan = cli("apply", _write(tmp_path, "tenants:\n  - name: a\n    plan: gold\n"), expect=1)
    assert "plan 'gold' is neither declared nor known" in missing_plan.stderr
    assert cli("tenants", "list", "--json")["data"] == []


def test_tenant_without_keys_entry_keeps_its_keys_even_with_prune(cli: Invoke, tmp_path: Path) -> None:
    cli("apply", _write(tmp_path, ISSUE_EXAMPLE))
    no_keys_entry = ISSUE_EXAMPLE.replace("    keys:\n      - name: main\n", "")
    assert cli("apply", _write(tmp_path, no_keys_entry, "b.yaml"), "--prune").strip() == "no changes"
    empty_keys = ISSUE_EXAMPLE.replace("      - name: main\n", "").replace("keys:", "keys: []")
    assert "- key yaml-co/main  (revoke)" in cli("apply", _write(tmp_path, empty_keys, "c.yaml"), "--prune")


def test_a_plans_fair_share_weight_reaches_its_tenants_keys_and_a_tenant_may_override_it(
    cli: Invoke, tmp_path: Path, database_url: str
) -> None:
    text = """
plans:
  - name: gold
    fair_share_weight: 4
tenants:
  - name: heavy
    plan: gold
    keys:
      - name: main
  - name: heavier
    plan: gold
    fair_share_weight: 9
    keys:
      - name: main
  - name: plain
    keys:
      - name: main
"""
    applied = cli("apply", _write(tmp_path, text), "--json")
    weights = {
        new["tenant"]: _principal(database_url, new["key"]).fair_share_weight  # type: ignore[union-attr]
        for new in applied["new_keys"]
    }
    assert weights == {"heavy": 4, "heavier": 9, "plain": 1}
    refused = cli("apply", _write(tmp_path, text.replace("fair_share_weight: 9", "fair_share_weight: 0")), expect=2)
    assert "tenants[1].fair_share_weight: Input should be greater than or equal to 1" in refused.output
