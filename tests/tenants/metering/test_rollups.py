"""Rollups equal the raw events they summarise, for any batches, replays and query (property tests)."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tenantgate.database import create_engine
from tenantgate.tenants.metering.models import ROLLUP_SUMS
from tenantgate.tenants.metering.rollups import DAY, MINUTE, VALUE_FIELDS, UsageQuery, aggregate, tiles
from tenantgate.tenants.metering.store import row_of, store_for
from tests.support.metering import make_event

BASE = 1_795_000_000  # not aligned to a minute, hour or day: edges get exercised
SPAN = 3 * DAY
TENANTS, KEYS, MODELS = ("ten_a", "ten_b"), ("key_1", "key_2", "key_3"), ("gpt-4o-mini", "gpt-4o", "o4-mini")
CATEGORIES = ("completions", "embeddings", "images")


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_tiles_cover_a_range_exactly_once(start_minute: int, minutes: int) -> None:
    lo, hi = BASE // 60 * 60 + start_minute * MINUTE, BASE // 60 * 60 + (start_minute + minutes) * MINUTE
    covered = sorted((start, end) for _, start, end in tiles(lo, hi))
    assert covered[0][0] == lo and covered[-1][1] == hi
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert all(start % width == 0 and end % width == 0 for width, start, end in tiles(lo, hi))


_event = st.fixed_dictionaries(
    {
        "tenant_id": st.sampled_from(TENANTS),
        "api_key_id": st.sampled_from(KEYS),
        "model": st.sampled_from(MODELS),
        "category": st.sampled_from(CATEGORIES),
        "occurred_at": st.floats(BASE, BASE + SPAN, allow_nan=False).map(lambda t: round(t, 3)),
        "billable": st.booleans(),
        # None: a measured quantity (seconds, images) has no token usage source
        "usage_source": st.sampled_from(["upstream", "estimated", None]),
        "unpriced": st.sampled_from([None, None, "model", "usage"]),
        **{name: st.integers(0, 2_000_000) for name in ROLLUP_SUMS},
    }
)


@st.composite
def _batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Unique events, and the batches they are written in, with replays of earlier events mixed in."""
    unique = [make_event(**fields) for fields in draw(st.lists(_event, min_size=1, max_size=60))]
    writes = list(unique)
    writes += draw(st.lists(st.sampled_from(unique), max_size=20))  # replays: must change nothing
    cuts = sorted(draw(st.lists(st.integers(0, len(writes)), max_size=4)))
    bounds = [0, *cuts, len(writes)]
    return unique, [writes[a:b] for a, b in itertools.pairwise(bounds) if a < b]


_query = st.builds(
    lambda start, length, width, group_by, tenants, models, categories: UsageQuery(
        start=(BASE // 60 + start) * 60,
        end=(BASE // 60 + start + length) * 60,
        width=width,
        group_by=tuple(group_by),
        project_ids=tenants,
        models=models,
        categories=categories,
    ),
    st.integers(-60, SPAN // 60),
    st.integers(1, SPAN // 60 + 60),
    st.sampled_from([60, 3600, 86400, 7 * 60, 5 * 3600]),
    st.lists(st.sampled_from(["tenant_id", "api_key_id", "model", "category"]), unique=True, max_size=3),
    st.none() | st.lists(st.sampled_from(TENANTS), unique=True).map(tuple),
    st.none() | st.lists(st.sampled_from(MODELS), min_size=1, unique=True).map(tuple),
    st.none() | st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True).map(tuple),
)


def _expected(events: list[dict[str, Any]], query: UsageQuery, tenant_id: str | None) -> dict[Any, Any]:
    out: dict[int, dict[tuple[Any, ...], dict[str, int]]] = defaultdict(dict)
    for e in events:
        second = int(e["occurred_at"])
        if not e["billable"] or not query.start <= second < query.end:
            continue
        if tenant_id is not None and e["tenant_id"] != tenant_id:
            continue
        if any(
            allowed is not None and e[field] not in allowed
            for field, allowed in (
                ("tenant_id", query.project_ids),
                ("model", query.models),
                ("category", query.categories),
            )
        ):
            continue
        key = tuple(e[name] for name in query.group_by)
        totals = out[(second - query.start) // query.width].setdefault(key, dict.fromkeys(VALUE_FIELDS, 0))
        totals["requests"] += 1
        totals["estimated_requests"] += e["usage_source"] == "estimated"
        totals["unpriced_requests"] += e["unpriced"] is not None
        totals["web_search_requests"] += e["web_search_calls"] > 0
        for name in ROLLUP_SUMS:
            totals[name] += e[name]
    return dict(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_batches(), queries=st.lists(_query, min_size=1, max_size=4), scoped=st.sampled_from([None, "ten_a"]))
def test_rollups_equal_raw_aggregation(
    database_url: str,
    data: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]],
    queries: list[UsageQuery],
    scoped: str | None,
) -> None:
    unique, batches = data

    async def check() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM usage_events"))
                await conn.execute(text("DELETE FROM usage_rollups"))
            store = store_for(engine)
            inserted = 0
            for batch in batches:
                inserted += await store.write([row_of(event) for event in batch])
            await store.close()
            assert inserted == len(unique)
            for query in queries:
                async with engine.connect() as conn:
                    got = await aggregate(conn, query, tenant_id=scoped)
                as_dicts = {i: {k: t.values for k, t in groups.items()} for i, groups in got.items()}
                assert as_dicts == _expected(unique, query, scoped)
        finally:
            await engine.dispose()

    asyncio.run(check())
