"""The benchmark harness's pieces, run cheaply: the canned upstream, the passthrough, wrk's script, the results.

Not a load test: each wrk run here lasts one second on one connection.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bench import canned, memory, services
from bench.load import run_wrk, write_bodies
from bench.passthrough import create_app
from bench.upstream import CannedUpstream
from tests.support.server import ServedApp

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

REPLY = "".join(canned.REPLY_PIECES)


@pytest.fixture(params=["asyncio", "nginx"])
def upstream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CannedUpstream]:
    if request.param == "nginx" and shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx); the asyncio upstream is tested instead")
    served = CannedUpstream(["a", "b"], tmp_path, kind=request.param).start()
    try:
        yield served
    finally:
        served.stop()


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="tg-bench-test", max_retries=0, timeout=10)


def _check_completion_and_stream(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(**canned.REQUEST)  # type: ignore[call-overload]
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == REPLY
    assert completion.usage is not None and completion.usage.total_tokens == canned.PROMPT_TOKENS + len(
        canned.REPLY_PIECES
    )
    chunks = list(
        client.chat.completions.create(  # type: ignore[call-overload]
            **canned.STREAM_REQUEST, extra_headers={canned.STREAM_HEADER: "1"}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(canned.REPLY_PIECES)


def test_canned_upstream_answers_what_the_openai_sdk_parses(upstream: CannedUpstream) -> None:
    _check_completion_and_stream(_client(upstream.url("a")))
    # Each port's answers are counted apart: the usage check compares a gateway's own upstream calls.
    assert upstream.counts() == {"a": {"json": 1, "sse": 1}, "b": {"json": 0, "sse": 0}}


def test_passthrough_forwards_plain_and_streamed_completions(upstream: CannedUpstream) -> None:
    with ServedApp(create_app(upstream.url("b"))) as passthrough:
        _check_completion_and_stream(_client(passthrough.url + "/v1"))
    assert upstream.counts()["b"] == {"json": 1, "sse": 1}


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_wrk_script_sends_the_chat_request_and_reports_percentiles(
    upstream: CannedUpstream, tmp_path: Path, stream: bool
) -> None:
    result = run_wrk(
        upstream.url("a") + "/chat/completions",
        key="tg-bench-test",
        body_file=write_bodies(tmp_path)[stream],
        stream=stream,
        connections=1,
        seconds=1,
    )
    assert result.requests > 50 and result.non_2xx == 0 and result.socket_errors == 0
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
    assert result.rps == pytest.approx(result.requests / result.duration_s, rel=0.01)
    counted = upstream.counts()["a"]
    # Every request wrk completed reached the upstream as the streamed or plain variant; at most the one in
    # flight when wrk stopped was not counted by wrk.
    assert counted["sse" if stream else "json"] in (result.requests, result.requests + 1)
    assert counted["json" if stream else "sse"] == 0


def test_otlp_sink_accepts_exports_and_counts_them() -> None:
    import urllib.request

    from bench.otlp_sink import OtlpSink

    sink = OtlpSink().start()
    try:
        for path, body in (("/v1/traces", b"\x0a\x00"), ("/v1/traces", b"\x0a\x01\x00"), ("/v1/metrics", b"")):
            request = urllib.request.Request(
                sink.endpoint + path, data=body, headers={"Content-Type": "application/x-protobuf"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
        assert sink.stats() == {
            "/v1/metrics": {"requests": 1, "bytes": 0},
            "/v1/traces": {"requests": 2, "bytes": 5},
        }
    finally:
        sink.stop()


def test_memory_benchmark_reads_every_phase_of_a_worker(postgres_server: str, redis_url: str) -> None:
    readings = memory.measure("heuristic", 1, 2, postgres_server=postgres_server, redis_url=redis_url)
    assert [r.phase for r in readings] == [
        "started, 2 requests served",
        "after 1 s plain at 2 connections",
        "after 1 s plain at 2 connections",
        "after 1 s streamed at 2 connections",
    ]
    assert readings[0].rps is None and all(r.rps and r.rps > 0 for r in readings[1:])
    # A whole worker, read from /proc: tens of MB at least, and the peak never under the current size.
    assert all(50 < r.rss_mb <= r.peak_mb for r in readings)
    assert [r.peak_mb for r in readings] == sorted(r.peak_mb for r in readings)


def test_a_peak_once_read_is_kept_when_the_kernel_reads_lower_later(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Linux's VmHWM can read lower than an earlier reading (the CI run that found it: 100.2 MB, then 99.9 MB).
    readings = iter([{"VmHWM": 102_605, "VmRSS": 102_605}, {"VmHWM": 102_298, "VmRSS": 101_000}])
    monkeypatch.setattr(services, "memory_kb", lambda pid: next(readings))
    with subprocess.Popen(["sleep", "30"]) as popen:
        try:
            process = services.Process("worker", popen, tmp_path / "log")
            assert process.peak_rss_mb() == {str(popen.pid): 100.2}
            assert process.peak_rss_mb() == {str(popen.pid): 100.2}
        finally:
            popen.kill()
    readings = iter([{"VmHWM": 102_605, "VmRSS": 102_605}, {"VmHWM": 102_298, "VmRSS": 101_000}])
    monkeypatch.setattr(memory, "memory_kb", lambda pid: next(readings))
    first = memory._read(1, "first")
    assert memory._read(1, "second", after=first).peak_mb == 100.2
