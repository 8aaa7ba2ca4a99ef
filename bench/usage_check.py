"""After the run: does the usage data hold exactly one event per successful request?

The expected count of each tenantgate variant is what its own upstream port answered with 200 (nginx's access log):
every request the gateway forwarded and the upstream served is one the tenant is billed for, including the few
that wrk abandoned when a measurement ended. wrk's own success count is reported beside it.

Metering is issue 5. This check does not assume its schema: it looks for a usage table in the run's database (a
table whose name contains ``usage`` or ``meter`` and that has a ``tenant_id`` column, preferring one whose name
says ``event``), counts its rows per benchmark tenant, and, if there is a ``request_id`` column, also distinct
request ids (a duplicate shows up as rows > distinct). Where no such table exists the check is SKIPPED and says so;
where the table is ambiguous, name it with ``--usage-table``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

_CANDIDATES_SQL = """
SELECT c.table_name, array_agg(c.column_name::text ORDER BY c.ordinal_position)
FROM information_schema.columns c
WHERE c.table_schema = current_schema()
  AND (c.table_name ILIKE '%usage%' OR c.table_name ILIKE '%meter%')
GROUP BY c.table_name
"""


async def _query(dsn: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def find_usage_table(dsn: str, override: str | None = None) -> tuple[str | None, list[str], str]:
    """(table, its columns, why) — table is None when there is none to check, with the reason."""
    tables = {row[0]: list(row[1]) for row in asyncio.run(_query(dsn, _CANDIDATES_SQL))}
    if override:
        if override not in tables:
            return None, [], f"the table {override!r} given with --usage-table is not in the database"
        return override, tables[override], "named with --usage-table"
    with_tenant = {name: cols for name, cols in tables.items() if "tenant_id" in cols}
    if not with_tenant:
        found = f" (found {', '.join(sorted(tables))}, none with a tenant_id column)" if tables else ""
        return None, [], f"no usage table in the database{found}: metering (issue 5) is not in this build"
    events = {name: cols for name, cols in with_tenant.items() if "event" in name}
    pool = events or with_tenant
    if len(pool) > 1:
        return None, [], f"several candidate usage tables ({', '.join(sorted(pool))}); choose one with --usage-table"
    name = next(iter(pool))
    return name, pool[name], "detected"


def _count(dsn: str, table: str, columns: list[str], tenant_ids: list[str]) -> dict[str, dict[str, int]]:
    distinct = ", count(DISTINCT request_id)" if "request_id" in columns else ""
    sql = f'SELECT tenant_id, count(*){distinct} FROM "{table}" WHERE tenant_id = ANY($1::text[]) GROUP BY tenant_id'
    rows = asyncio.run(_query(dsn, sql, tenant_ids))
    counts = {t: {"rows": 0} for t in tenant_ids}
    for row in rows:
        counts[row[0]] = {"rows": row[1], **({"distinct_request_ids": row[2]} if distinct else {})}
    return counts


def check_usage(
    dsn: str,
    expected: dict[str, dict[str, Any]],
    *,
    override: str | None = None,
    settle_seconds: float = 30,
) -> dict[str, Any]:
    """``expected`` maps a variant to {"tenant_id", "upstream_200", "client_2xx"}."""
    table, columns, why = find_usage_table(dsn, override)
    if table is None:
        return {"status": "skipped", "reason": why}
    tenant_ids = [e["tenant_id"] for e in expected.values()]
    want = {e["tenant_id"]: e["upstream_200"] for e in expected.values()}
    # Metering writes in batches: wait until the counts reach what is expected or stop moving.
    deadline = time.monotonic() + settle_seconds
    counts = _count(dsn, table, columns, tenant_ids)
    while time.monotonic() < deadline and any(counts[t]["rows"] < want[t] for t in tenant_ids):
        time.sleep(1)
        newer = _count(dsn, table, columns, tenant_ids)
        if newer == counts:
            time.sleep(2)
            newer = _count(dsn, table, columns, tenant_ids)
            if newer == counts:
                break
        counts = newer
    variants = {}
    for name, e in expected.items():
        got = counts[e["tenant_id"]]
        rows = got["rows"]
        duplicates = rows - got.get("distinct_request_ids", rows)
        variants[name] = {
            **e,
            "events": rows,
            "lost": max(0, e["upstream_200"] - rows),
            "extra": max(0, rows - e["upstream_200"]),
            "duplicate_request_ids": duplicates,
            "ok": rows == e["upstream_200"] and duplicates == 0,
        }
    ok = all(v["ok"] for v in variants.values())
    return {"status": "pass" if ok else "fail", "table": table, "how_found": why, "variants": variants}
