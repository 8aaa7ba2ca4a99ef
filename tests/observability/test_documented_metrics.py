"""No dead or undocumented-but-missing metrics: after some traffic, /metrics has every metric (and label) the docs
name, and every instrument the gateway registers is on /metrics and in the OTLP export."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tenantgate.platform.app import create_app
from tenantgate.wire.prometheus import prometheus_name
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY, make_settings
from tests.support.databases import migrated_sqlite_url
from tests.support.gateway import Gateway
from tests.support.metering import flush
from tests.support.otlp import HttpReceiver
from tests.support.prometheus import Scrape, scrape
from tests.support.server import ServedApp

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "count me"}]
# A name as the docs write it: `tenantgate_upstream_attempts_total`, and a shorthand after it in the same line
# (`_retries_total`: the full name with its last words replaced, or `_sum`: one of its series); or an OpenTelemetry
# name something is "counted in".
_PROMETHEUS = re.compile(
    r"`((?:tenantgate_|http_(?:server|request|route|response)|gen_ai_|process_|python_)[a-z0-9_]*)`"
)
_SHORTHAND = re.compile(r"`(_[a-z0-9_]+)`")
_GONE = re.compile(r"\b(?:replaces|replaced|formerly|no longer|renamed from)\b[^`]*$")
_COUNTED_IN = re.compile(r"counted (?:in|as) `([a-z_]+(?:\.[a-z_]+)+)`")


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _historical(line: str, start: int) -> bool:
    """A name the docs say is gone: "(it replaces `tenantgate_admin_auth_failures_total`)"."""
    return _GONE.search(line[max(0, start - 24) : start]) is not None


def documented_names() -> dict[str, list[set[str]]]:
    """Where each documented name was seen (file:line) -> the names any of which would satisfy it."""
    wanted: dict[str, list[set[str]]] = {}
    for path in _documents():
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{number}"
            full = [(m.start(), m.group(1)) for m in _PROMETHEUS.finditer(line) if not _historical(line, m.start())]
            for _, name in full:
                wanted.setdefault(where, []).append({name})
            for match in _SHORTHAND.finditer(line):
                suffix = match.group(1)
                candidates = set()
                for start, name in full:  # any full name before it on the line (a table row names labels too)
                    if start < match.start():
                        words = name.split("_")
                        candidates |= {name + suffix, *("_".join(words[:cut]) + suffix for cut in range(1, len(words)))}
                if candidates:
                    wanted.setdefault(where, []).append(candidates)
            for match in _COUNTED_IN.finditer(line):
                underscored = match.group(1).replace(".", "_")
                wanted.setdefault(where, []).append({underscored, underscored + "_total"})
    return wanted


def _exported(metrics: Scrape) -> set[str]:
    """Every family, sample and label name on the scrape."""
    names = set(metrics.types)
    for sample, labels, _ in metrics.samples:
        names.add(sample)
        names.update(labels)
    return names


def _traffic(gateway: Gateway) -> None:
    key = gateway.new_key("docs")
    client = gateway.client(key["key"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input="x")
    limited = gateway.client(gateway.new_key("limited", rpm=1)["key"])
    limited.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        limited.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert httpx.get(gateway.url + "/admin/tenants", headers={"Authorization": "Bearer wrong"}).status_code == 401
    client.chat.completions.create(model="a-model-without-a-price", messages=MESSAGES)  # counted once written
    flush(gateway)


def test_every_metric_the_docs_name_is_on_metrics(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    wanted = documented_names()
    assert len(wanted) >= 10  # the docs were found and read
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)
    _traffic(gateway)
    exported = _exported(scrape(gateway.url))
    missing = {where: names for where, alternatives in wanted.items() for names in alternatives if not names & exported}
    assert missing == {}


def test_every_registered_instrument_is_on_metrics(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)
    _traffic(gateway)
    registry = gateway.runtime.telemetry.registry
    collected = registry.collect()
    assert sorted(m.spec.name for m in collected) == sorted(registry.names())  # no reading failed
    exported = _exported(scrape(gateway.url))
    assert {prometheus_name(m.spec) for m in collected} - exported == set()
    for expected in ("tenantgate_limits_redis_fallbacks", "process_cpu_seconds", "python_gc_collections"):
        assert expected in exported  # counters: the parser names the family without _total


def test_every_registered_instrument_is_documented(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """The reverse of the first test: an instrument the gateway registers is named, as /metrics names it, on a page."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)
    documented = {name for alternatives in documented_names().values() for names in alternatives for name in names}
    registered = {prometheus_name(m.spec) for m in gateway.runtime.telemetry.registry.collect()}
    assert len(registered) >= 20
    assert sorted(registered - documented) == []


def test_every_registered_instrument_is_in_the_otlp_export(
    tmp_path: Path, dev_upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,prometheus")
        url = migrated_sqlite_url(tmp_path / "otlp.db")
        settings = make_settings(database_url=url, upstream_base_url=dev_upstream, upstream_api_key=UPSTREAM_KEY)
        app = create_app(settings)
        with ServedApp(app) as served:
            _traffic(Gateway(url=served.url, admin_token=ADMIN_TOKEN, settings=settings, runtime=app.runtime))
            names = app.runtime.telemetry.registry.names()
        # Leaving the block ran the lifespan's shutdown, which exports the metrics one last time.
        missing = [name for name in names if receiver.received.metric(name) is None]
    assert missing == []


def test_no_instrument_is_made_with_the_opentelemetry_metrics_api() -> None:
    """No MeterProvider is set up: an instrument made with opentelemetry.metrics records into nothing. The gateway's
    instruments are the registry's (observability/metrics.py)."""
    makers = re.compile(r"get_meter\(|create_(?:counter|histogram|up_down_counter|gauge|observable_\w+)\(")
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "tenantgate").rglob("*.py"))
        if makers.search(path.read_text())
    ]
    assert offenders == []
