"""``tenantgate serve --workers 2``: /metrics counts every worker's requests, whichever worker is scraped."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenantgate.observability.exposition import WorkerSnapshot
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY
from tests.support.prometheus import scrape
from tests.support.services import free_port

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

REQUESTS = 40
CHAT = {"http_route": "/v1/chat/completions", "http_response_status_code": "200"}


@pytest.fixture
def two_workers(tmp_path: Path, dev_upstream: str) -> Iterator[tuple[str, Path, str]]:
    port, metrics_port = free_port(), free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # A previous run's snapshot must not leak into this one's totals.
    (metrics_dir / "metrics-999999-stale.json").write_bytes(
        WorkerSnapshot(pid=999999, instance="stale", written_at=0, metrics=[]).to_json()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTGATE_", "OTEL_"))}
    env.update(
        TENANTGATE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}",
        TENANTGATE_SECRET_KEY=SECRET_KEY,
        TENANTGATE_ADMIN_TOKEN=ADMIN_TOKEN,
        TENANTGATE_UPSTREAM_BASE_URL=dev_upstream,
        TENANTGATE_UPSTREAM_API_KEY=UPSTREAM_KEY,
        TENANTGATE_METRICS_DIR=str(metrics_dir),
        TENANTGATE_METRICS_PORT=str(metrics_port),
        TENANTGATE_LOG_LEVEL="warning",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, "serve exited"
            try:
                if scrape(url).total("tenantgate_workers") == 2:
                    break
            except (httpx.HTTPError, AssertionError):
                pass
            time.sleep(0.3)
        else:
            pytest.fail("two workers did not come up")
        yield url, metrics_dir, f"http://127.0.0.1:{metrics_port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _chat(url: str, key: str) -> int:
    # A fresh connection per request, so the kernel spreads them over both workers' accept queues.
    with httpx.Client(base_url=url, timeout=60) as client:
        response = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]},
        )
        return response.status_code


def test_metrics_merge_both_workers_and_never_go_backwards(two_workers: tuple[str, Path, str]) -> None:
    url, metrics_dir, listener = two_workers
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tenant = httpx.post(url + "/admin/tenants", headers=admin, json={"name": "multi"}).json()
    key = httpx.post(url + f"/admin/tenants/{tenant['id']}/keys", headers=admin, json={}).json()["key"]
    assert not (metrics_dir / "metrics-999999-stale.json").exists()

    # Which worker accepts a new connection is the kernel's choice: on a busy machine one worker can take a whole
    # batch. More batches are sent until both have served some (each one's own snapshot counts its share).
    sent = 0
    for _ in range(5):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: _chat(url, key), range(REQUESTS)))
        assert statuses == [200] * REQUESTS
        sent += REQUESTS

        # Every scrape (each on a new connection, so either worker answers) sees a total that never decreases and
        # reaches exactly the number of requests sent once the other worker's next snapshot is written.
        seen: list[float] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # Alternately the main port (with a token) and the metrics listener (no token, one worker holds it).
            metrics = scrape(url) if len(seen) % 2 else scrape(listener, token="")
            seen.append(metrics.total("http_server_request_duration_seconds_count", **CHAT))
            if seen[-1] == sent and len(seen) >= 10:
                break
            time.sleep(0.2)
        assert seen == sorted(seen), seen
        assert seen[-1] == sent
        assert metrics.total("tenantgate_workers") == 2
        assert metrics.total("gen_ai_server_request_duration_seconds_count", tenantgate_tenant_id=tenant["id"]) == sent

        shares = []
        for path in metrics_dir.glob("metrics-*.json"):
            snapshot = WorkerSnapshot.from_json(path.read_bytes())
            (duration,) = [m for m in snapshot.metrics if m.spec.name == "http.server.request.duration"]
            shares.append(sum(p.count for p in duration.points if p.labels[1] == "/v1/chat/completions"))
        assert len(shares) == 2 and sum(shares) == sent, shares
        if all(share > 0 for share in shares):
            break
    # Both workers really served some of the requests.
    assert all(share > 0 for share in shares), shares

    # Process metrics of both workers: memory adds up (what a container limit sees), the start time is the oldest's.
    snapshots = [WorkerSnapshot.from_json(path.read_bytes()) for path in metrics_dir.glob("metrics-*.json")]

    def read(snapshot: WorkerSnapshot, name: str) -> float:
        (metric,) = [m for m in snapshot.metrics if m.spec.name == name]
        return metric.points[0].value

    assert metrics.total("process_start_time_seconds") == min(read(s, "process.start_time") for s in snapshots)
    assert metrics.total("process_resident_memory_bytes") > max(read(s, "process.resident_memory") for s in snapshots)
