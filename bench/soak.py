"""Soak: tenantgate as in production under steady mixed load for minutes; memory, sockets and usage must hold.

    python -m bench.soak --minutes 10

One ``tenantgate serve --workers 1`` started by the benchmark's own stack (PostgreSQL, Redis, OTel to the local sink;
bench/stack.py), in front of the dev upstream (``tenantgate dev-upstream``, which serves chat, streamed chat and
embeddings). An asyncio client sends plain chat, streamed chat and embeddings in turn at a fixed rate. Every
``--sample-seconds`` it records the gateway's RSS, its open sockets (/proc/<pid>/fd), and from /metrics the requests
in flight (``http_server_active_requests``) and the metering buffer depth. At the end the gateway is stopped with
SIGTERM (buffers flush) and the billable usage events in the database are counted against the successful requests.
The gateway's asyncio task count is not exposed by any endpoint (and should not be, in production); requests in
flight and open sockets stand in for it: a leaked request task holds both.

Verdict: PASS when RSS grew less than 20% (and less than 50 MB) from the first sample after warm-up to the last,
open sockets and in-flight requests at the end are no higher than at the first sample plus a small margin, no
request failed, and usage events == successful requests (plus the two preflight requests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from bench import canned
from bench.config import GATEWAY_VARIANTS
from bench.services import free_port, memory_kb, spawn_process, wait_listening
from bench.stack import Stack, StackOptions

KINDS = ("plain", "stream", "embeddings")
EMBEDDING = {"model": "text-embedding-3-small", "input": "a sentence to embed for the soak test"}


@dataclass
class Sample:
    elapsed: float
    rss_mb: float
    sockets: int
    in_flight: float
    buffer_depth: float
    sent: int


@dataclass
class Load:
    sent: int = 0
    ok: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    errors: list[str] = field(default_factory=list)


def _sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def _metric(text: str, name: str) -> float:
    """Sum of a metric's samples on /metrics (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"{re.escape(name)}(\{{|\s)", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _one(session: aiohttp.ClientSession, base: str, key: str, kind: str, load: Load) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    try:
        if kind == "embeddings":
            async with session.post(base + "/embeddings", json=EMBEDDING, headers=headers) as response:
                body = await response.read()
                good = response.status == 200 and b'"embedding"' in body
        else:
            payload = canned.STREAM_REQUEST if kind == "stream" else canned.REQUEST
            async with session.post(base + "/chat/completions", json=payload, headers=headers) as response:
                body = await response.read()
                good = response.status == 200 and (kind != "stream" or body.rstrip().endswith(b"data: [DONE]"))
        if not good:
            load.errors.append(f"{kind}: {response.status} {body[:200]!r}")
    except (aiohttp.ClientError, TimeoutError) as error:
        good = False
        load.errors.append(f"{kind}: {type(error).__name__} {error}")
    (load.ok if good else load.failed)[kind] += 1


async def _sample(session: aiohttp.ClientSession, root: str, pid: int, started: float, load: Load) -> Sample:
    async with session.get(root + "/metrics", headers={"Authorization": f"Bearer {_ADMIN[0]}"}) as response:
        text = await response.text()
    rss = sum(memory_kb(p).get("VmRSS", 0) for p in [pid]) / 1024
    return Sample(
        elapsed=time.monotonic() - started,
        rss_mb=round(rss, 1),
        sockets=_sockets(pid),
        in_flight=_metric(text, "http_server_active_requests"),
        buffer_depth=_metric(text, "tenantgate_metering_buffer_depth"),
        sent=load.sent,
    )


_ADMIN = [""]


async def _drive(base: str, key: str, pid: int, seconds: float, rate: float, every: float) -> tuple[Load, list[Sample]]:
    load, samples, pending = Load(), [], set()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        root = base.removesuffix("/v1")
        started = time.monotonic()
        samples.append(await _sample(session, root, pid, started, load))
        print(_row(samples[-1]), flush=True)
        next_sample = started + every
        kinds = itertools.cycle(KINDS)
        for n in itertools.count():
            due = started + n / rate
            now = time.monotonic()
            if due - started >= seconds:
                break
            if now >= next_sample:
                samples.append(await _sample(session, root, pid, started, load))
                print(_row(samples[-1]), flush=True)
                next_sample += every
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(_one(session, base, key, next(kinds), load))
            pending.add(task)
            task.add_done_callback(pending.discard)
            load.sent += 1
        await asyncio.gather(*pending)
        await asyncio.sleep(1)
        samples.append(await _sample(session, root, pid, started, load))
        print(_row(samples[-1]) + "  (after the load drained)", flush=True)
    return load, samples


def _row(s: Sample) -> str:
    return (
        f"  t={s.elapsed:6.0f}s  sent={s.sent:7d}  rss={s.rss_mb:7.1f} MB  sockets={s.sockets:4d}  "
        f"in_flight={s.in_flight:4.0f}  metering_buffer={s.buffer_depth:5.0f}"
    )


async def _billable_events(dsn: str, tenant_id: str) -> int:
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM usage_events WHERE tenant_id = $1 AND billable", tenant_id)
        )
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=30, help="requests per second (plain, stream, embeddings)")
    parser.add_argument("--sample-seconds", type=float, default=30)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TENANTGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("TENANTGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--keep", action="store_true", help="keep the database, Redis keys and logs")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="tg-soak-"))
    port = free_port()
    upstream = spawn_process(
        "dev-upstream",
        [sys.executable, "-m", "tenantgate", "dev-upstream", "--port", str(port)],
        ports=[port],
        log_dir=workdir,
    )
    try:
        wait_listening(upstream)
        options = StackOptions(
            variants=(GATEWAY_VARIANTS[0],),
            with_passthrough=False,
            postgres_server=args.postgres_url,
            redis_url=args.redis_url,
            keep=args.keep,
            extra_env={"TENANTGATE_UPSTREAM_BASE_URL": f"http://127.0.0.1:{port}/v1"},
        )
        with Stack(workdir, options) as stack:
            name = GATEWAY_VARIANTS[0].name
            contender, process = stack.contenders[name], stack.gateways[name]
            assert contender.tenant_id is not None
            _ADMIN[0] = stack.admin_token
            print(f"soak: {args.minutes:g} min at {args.rate:g} req/s, mixed {'/'.join(KINDS)}; logs in {workdir}")
            load, samples = asyncio.run(
                _drive(
                    contender.base_url, contender.key, process.pid, args.minutes * 60, args.rate, args.sample_seconds
                )
            )
            stack.stop_gateways()  # SIGTERM: the metering buffer is flushed before exit
            events = asyncio.run(_billable_events(stack.database_url, contender.tenant_id))
    finally:
        upstream.stop()
    return _verdict(load, samples, events)


def _verdict(load: Load, samples: list[Sample], events: int) -> int:
    ok, failed = sum(load.ok.values()), sum(load.failed.values())
    expected_events = ok + 2  # the stack's preflight sends one plain and one streamed request
    first = samples[1] if len(samples) > 2 else samples[0]  # after warm-up
    last = samples[-1]
    growth = last.rss_mb - first.rss_mb
    checks = {
        f"RSS flat ({first.rss_mb} -> {last.rss_mb} MB)": growth < max(0.2 * first.rss_mb, 1) and growth < 50,
        f"sockets not growing ({first.sockets} -> {last.sockets})": last.sockets <= first.sockets + 5,
        f"nothing left in flight ({last.in_flight:g})": last.in_flight <= 1,  # the /metrics scrape itself
        f"no failed requests ({failed} of {load.sent})": failed == 0,
        f"usage events == successful requests ({events} == {expected_events})": events == expected_events,
    }
    print(f"\nrequests ok by kind: {load.ok}; failed: {load.failed}")
    for error in load.errors[:5]:
        print(f"  e.g. {error}")
    for label, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")
    verdict = all(checks.values())
    print(f"verdict: {'PASS' if verdict else 'FAIL'}")
    return 0 if verdict else 1


if __name__ == "__main__":
    raise SystemExit(main())
