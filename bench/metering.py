"""Metering benchmark: batched write throughput into Postgres, and usage queries over ten million events.

    .venv/bin/python -m bench.metering [--server postgresql://postgres@127.0.0.1:5432] [--events 10000000]

It creates its own database (dropped at the end unless --keep) and measures, in this order:

1. bulk load: ``--events`` synthetic events generated inside Postgres (``generate_series``, 35 days, 200 tenants,
   one of them — ``ten_target`` — with 30 % of the traffic over 50 keys and 4 models), and their minute/hour/day
   rollups built with one GROUP BY each. This is a generator, not the gateway's write path: it only sets the
   stage quickly. (That incremental rollups equal this aggregation is what tests/tenants/metering/test_rollups.py
   checks.)
2. write throughput of the gateway's own path into that 10M-row table: ``PostgresEventStore.write`` in batches
   (COPY + insert-or-ignore + rollups), then the whole writer (spool lines -> parse -> price -> write ->
   checkpoint), and the cost of the hot-path spool append per event. The synthetic traffic is what a gateway
   at 10,000 requests/s produces: timestamps 0.1 ms apart, 200 tenants with a long-tailed share, 5 keys each.
3. query latency through ``rollups.aggregate`` (the code behind ``GET /v1/organization/usage/*`` and the
   invoices): 31 daily buckets of ``ten_target`` ungrouped, by model, by key and model; 168 hourly and 1440
   minute buckets; a 30-day invoice range starting at an arbitrary second; all tenants by project.

Results go to stdout as JSON (and to bench/results/metering-<time>.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tenantgate import database
from tenantgate.tenants.metering.events import encode
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.rollups import DAY, UsageQuery, aggregate
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.store import PostgresEventStore, row_of
from tenantgate.tenants.metering.writer import MeterWriter, price_event

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small")
SPAN_DAYS = 35

_BULK_EVENTS = """
INSERT INTO usage_events (
  id, request_id, occurred_at, tenant_id, api_key_id, endpoint, category, model, upstream, response_model, status,
  stream, billable, usage_source, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
  input_audio_tokens, output_audio_tokens, image_tokens, quantity, latency_ms, ttft_ms, client_disconnected,
  attempts, cost_input_nusd, cost_cached_input_nusd, cost_output_nusd, price_version)
SELECT
  'evt_bench_' || g, 'req_bench_' || g,
  to_timestamp($1::float8 + (g::float8 / $3::float8) * $4::float8),
  CASE WHEN g % 10 < 3 THEN 'ten_target' ELSE 'ten_' || (g % 199) END,
  CASE WHEN g % 10 < 3 THEN 'key_t' || (g % 50) ELSE 'key_' || (g % 199) || '_' || (g % 5) END,
  CASE WHEN g % 4 = 3 THEN '/v1/embeddings' ELSE '/v1/chat/completions' END,
  CASE WHEN g % 4 = 3 THEN 'embeddings' ELSE 'completions' END,
  (ARRAY['gpt-4o-mini','gpt-4o','gpt-4.1-mini','text-embedding-3-small'])[g % 4 + 1],
  'default',
  (ARRAY['gpt-4o-mini','gpt-4o','gpt-4.1-mini','text-embedding-3-small'])[g % 4 + 1],
  200, g % 2 = 0, g % 50 <> 0, CASE WHEN g % 97 = 0 THEN 'estimated' ELSE 'upstream' END,
  100 + g % 900, (g % 7) * 10, CASE WHEN g % 4 = 3 THEN 0 ELSE 20 + g % 300 END, 0, 0, 0, 0, 0,
  50 + g % 400, NULL, false, 1, (100 + g % 900) * 150, 0, (20 + g % 300) * 600, '2026-11-01'
FROM generate_series($2::bigint, $2::bigint + $5::bigint - 1) AS g
"""

_BULK_ROLLUPS = """
INSERT INTO usage_rollups (width, bucket_start, tenant_id, api_key_id, model, category, requests, estimated_requests,
  input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, input_audio_tokens, output_audio_tokens,
  image_tokens, quantity, cost_input_nusd, cost_cached_input_nusd, cost_output_nusd)
SELECT $1::int, (floor(extract(epoch FROM occurred_at))::bigint / $1::int) * $1::int, tenant_id, api_key_id, model,
  category, count(*), count(*) FILTER (WHERE usage_source = 'estimated'), sum(input_tokens),
  sum(cached_input_tokens), sum(output_tokens), sum(reasoning_tokens), sum(input_audio_tokens),
  sum(output_audio_tokens), sum(image_tokens), sum(quantity), sum(cost_input_nusd), sum(cost_cached_input_nusd),
  sum(cost_output_nusd)
FROM usage_events WHERE billable GROUP BY 1, 2, 3, 4, 5, 6
"""


def status() -> str:
    """What ``python -m bench.run`` prints about this benchmark (it runs separately: it needs minutes)."""
    return "run `python -m bench.metering` (write throughput, and usage queries over --events synthetic events)"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def bulk_load(dsn: str, events: int, start: float) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET synchronous_commit = off")
        started = time.perf_counter()
        chunk = 1_000_000
        for first in range(1, events + 1, chunk):
            count = min(chunk, events - first + 1)
            await conn.execute(_BULK_EVENTS, start, first, events, SPAN_DAYS * DAY, count)
            _log(f"  generated {first + count - 1:,} events")
        generated = time.perf_counter() - started
        started = time.perf_counter()
        for width in (60, 3600, 86400):
            await conn.execute(_BULK_ROLLUPS, width)
            _log(f"  rollups of width {width}s built")
        await conn.execute("ANALYZE usage_events")
        await conn.execute("ANALYZE usage_rollups")
        rollup_rows = await conn.fetch("SELECT width, count(*) FROM usage_rollups GROUP BY width ORDER BY width")
        target = await conn.fetchval("SELECT count(*) FROM usage_events WHERE tenant_id = 'ten_target'")
        return {
            "events": events,
            "target_tenant_events": target,
            "generate_seconds": round(generated, 1),
            "rollup_build_seconds": round(time.perf_counter() - started, 1),
            "rollup_rows": {f"{row[0]}s": row[1] for row in rollup_rows},
        }
    finally:
        await conn.close()


def synthetic_events(count: int, now: float, rate: float = 10_000) -> list[dict[str, Any]]:
    """Events as a gateway serving ``rate`` requests/s would spool them: 200 tenants with a long-tailed share of
    the traffic (Pareto), 5 keys each, 4 models."""
    rng = random.Random(7)
    events = []
    for i in range(count):
        tenant = int(rng.paretovariate(1.0)) % 200
        model = MODELS[rng.randrange(4)]
        embedding = model.startswith("text-embedding")
        events.append(
            {
                "id": f"evt_w_{uuid.uuid4().hex}",
                "request_id": f"req_{uuid.uuid4().hex}",
                "occurred_at": now + i / rate,
                "tenant_id": f"ten_w{tenant}",
                "api_key_id": f"key_w{tenant}_{rng.randrange(5)}",
                "endpoint": "/v1/embeddings" if embedding else "/v1/chat/completions",
                "category": "embeddings" if embedding else "completions",
                "model": model,
                "upstream": "default",
                "upstream_model": None,
                "response_model": model,
                "status": 200,
                "stream": i % 2 == 0,
                "billable": True,
                "usage_source": "upstream",
                "input_tokens": rng.randrange(10, 4000),
                "cached_input_tokens": 0,
                "output_tokens": 0 if embedding else rng.randrange(1, 800),
                "reasoning_tokens": 0,
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "image_tokens": 0,
                "quantity": 0,
                "latency_ms": rng.randrange(100, 4000),
                "ttft_ms": None,
                "client_disconnected": False,
                "error_type": None,
                "attempts": 1,
            }
        )
    return events


async def write_throughput(url: str, count: int, batch: int) -> dict[str, Any]:
    engine = database.create_engine(url)
    book = PriceBook.load()
    store = PostgresEventStore(engine)
    try:
        events = [row_of(price_event(book, e)) for e in synthetic_events(count, time.time())]
        await store.write(events[:batch])  # warm the connection and the prepared statement
        started = time.perf_counter()
        written = batch
        for first in range(batch, count, batch):
            written += await store.write(events[first : first + batch])
        store_seconds = time.perf_counter() - started
        replay_started = time.perf_counter()
        replayed = await store.write(events[:batch])  # a replay: all ids known, nothing counted twice
        replay_seconds = time.perf_counter() - replay_started

        lines = [encode(e) for e in synthetic_events(count, time.time())]
        with tempfile.TemporaryDirectory() as directory:
            spool = Spool(Path(directory))
            spool.open()
            started = time.perf_counter()
            for line in lines:
                spool.append(line)
            append_seconds = time.perf_counter() - started
            writer = MeterWriter(spool, store, book, interval=3600, batch_size=batch)
            started = time.perf_counter()
            flushed = await writer.flush()
            writer_seconds = time.perf_counter() - started
            spool.close()
        return {
            "batch_size": batch,
            "store_events": written - batch,
            "store_events_per_second": round((written - batch) / store_seconds),
            "replay_of_a_batch_inserted": replayed,
            "replay_batch_ms": round(replay_seconds * 1000, 1),
            "writer_events": flushed,
            "writer_events_per_second": round(flushed / writer_seconds),
            "spool_append_us_per_event": round(append_seconds / count * 1e6, 2),
        }
    finally:
        await engine.dispose()


async def query_latency(url: str, now: int, runs: int) -> dict[str, Any]:
    engine = database.create_engine(url)
    day_start = now // DAY * DAY
    aligned = day_start - 30 * DAY
    cases = {
        "31 daily buckets, one tenant": (UsageQuery(aligned, day_start + DAY, DAY), "ten_target"),
        "31 daily buckets, one tenant, by model": (UsageQuery(aligned, day_start + DAY, DAY, ("model",)), "ten_target"),
        "31 daily buckets, one tenant, by key and model": (
            UsageQuery(aligned, day_start + DAY, DAY, ("api_key_id", "model")),
            "ten_target",
        ),
        "168 hourly buckets, one tenant, by model": (
            UsageQuery(now // 3600 * 3600 - 167 * 3600, now // 3600 * 3600 + 3600, 3600, ("model",)),
            "ten_target",
        ),
        "1440 minute buckets, one tenant": (
            UsageQuery(now // 60 * 60 - 1439 * 60, now // 60 * 60 + 60, 60),
            "ten_target",
        ),
        "invoice: 30 days from an unaligned instant, one tenant, by model (tiled day/hour/minute)": (
            UsageQuery((now - 30 * DAY) // 60 * 60, now // 60 * 60, 30 * DAY, ("model",)),
            "ten_target",
        ),
        "31 daily buckets, all tenants, by project": (UsageQuery(aligned, day_start + DAY, DAY, ("tenant_id",)), None),
    }
    results: dict[str, Any] = {}
    try:
        for name, (query, tenant) in cases.items():
            timings = []
            requests = 0
            for _ in range(runs):
                started = time.perf_counter()
                async with engine.connect() as conn:
                    buckets = await aggregate(conn, query, tenant_id=tenant)
                timings.append((time.perf_counter() - started) * 1000)
                requests = sum(t["requests"] for groups in buckets.values() for t in groups.values())
            timings.sort()
            results[name] = {
                "p50_ms": round(statistics.median(timings), 2),
                "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
                "max_ms": round(timings[-1], 2),
                "requests_summed": requests,
            }
            _log(f"  {name}: p50 {results[name]['p50_ms']} ms")
    finally:
        await engine.dispose()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--write-events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    name = f"tg_bench_metering_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{args.server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{args.server}/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        await database.upgrade_async(url)
        now = int(time.time())
        _log(f"bulk load of {args.events:,} events into {name}")
        bulk = await bulk_load(dsn, args.events, now - SPAN_DAYS * DAY)
        _log("write throughput")
        write = await write_throughput(url, args.write_events, args.batch)
        _log("query latency")
        queries = await query_latency(url, now, args.runs)
        report = {"database": name, "bulk_load": bulk, "write": write, "queries": queries}
        text = json.dumps(report, indent=2)
        print(text)
        results = Path(__file__).parent / "results"
        results.mkdir(exist_ok=True)
        (results / f"metering-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(text)
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
