"""The Prometheus text writer against prometheus_client's own parser: for generated metric names, units, label
names, label values (quotes, backslashes, newlines, any Unicode), values (infinities, NaN, huge and tiny) and
histograms, what the parser reads back is exactly what was written."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tenantgate.wire.prometheus import prometheus_label, prometheus_name, render_prometheus


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str
    unit: str = ""
    description: str = ""
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


@dataclass
class Point:
    labels: tuple[str | int, ...]
    value: float = 0.0
    counts: list[int] | None = None
    count: int = 0
    sum: float = 0.0


@dataclass
class Metric:
    spec: Spec
    points: list[Point]


NAMES = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_.]{0,16}", fullmatch=True),  # the usual OpenTelemetry names
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=24),
)
LABEL_NAMES = st.one_of(st.from_regex(r"[a-z][a-z0-9_.]{0,12}", fullmatch=True), NAMES)
UNITS = st.sampled_from(["", "s", "ms", "By", "1", "{request}", "{token}", "kb/s", "°C"])
LABEL_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(['quote " here', "back\\slash", "new\nline", "\\n literal", "cr\r", "", "tab\t", "é🙂"]),
    st.integers(min_value=-(10**6), max_value=10**6),
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60).map(float),
    st.sampled_from([0.0, -0.0, 1e15, 1e15 - 1, 5e-324, 1.7976931348623157e308]),
)


@st.composite
def metrics(draw: st.DrawFn) -> list[Metric]:
    out: list[Metric] = []
    taken: set[str] = set()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "updowncounter"]))
        label_names = draw(st.lists(LABEL_NAMES, max_size=3))
        # Label names are the gateway's own: distinct once sanitized, and none a name the format reserves.
        sanitized = [prometheus_label(n) for n in label_names]
        if len(set(sanitized)) < len(sanitized) or any(n == "le" or n.startswith("__") for n in sanitized):
            continue
        spec = Spec(
            name=draw(NAMES),
            kind=kind,
            unit=draw(UNITS),
            description=draw(st.text(max_size=40)),
            labels=tuple(label_names),
            buckets=tuple(sorted(set(draw(st.lists(st.floats(-1e9, 1e9), max_size=5))))) if kind == "histogram" else (),
        )
        name = prometheus_name(spec)
        if any(name in (t, t + suffix) or t in (name + suffix,) for t in taken for suffix in _SUFFIXES):
            continue  # two metrics (or one's series) under one name: the registry refuses duplicate names
        taken.add(name)
        points: list[Point] = []
        seen: set[tuple[str, ...]] = set()
        for _ in range(draw(st.integers(0, 4))):
            values = tuple(draw(LABEL_VALUES) for _ in label_names)
            key = tuple(str(v) for v in values)
            if key in seen:
                continue
            seen.add(key)
            if kind == "histogram":
                counts = draw(
                    st.lists(st.integers(0, 10**9), min_size=len(spec.buckets) + 1, max_size=len(spec.buckets) + 1)
                )
                points.append(Point(values, counts=counts, count=sum(counts), sum=draw(NUMBERS)))
            else:
                points.append(Point(values, value=draw(NUMBERS)))
        out.append(Metric(spec, points))
    return out


_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def _same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _expected(metric: Metric) -> list[tuple[str, dict[str, str], float]]:
    name = prometheus_name(metric.spec)
    names = [prometheus_label(label) for label in metric.spec.labels]
    samples = []
    for point in metric.points:
        labels = {n: str(v) for n, v in zip(names, point.labels, strict=True) if v != ""}
        if metric.spec.kind != "histogram":
            samples.append((name, labels, point.value))
            continue
        cumulative = 0
        for bound, count in zip((*metric.spec.buckets, math.inf), point.counts or [], strict=True):
            cumulative += count
            le = repr(float(bound) + 0.0)  # -0.0 is written as 0: the same bound
            samples.append((name + "_bucket", {**labels, "le": le}, float(cumulative)))
        samples += [(name + "_sum", labels, point.sum), (name + "_count", labels, float(point.count))]
    return samples


@settings(max_examples=300, deadline=None, database=None)
@given(written=metrics())
def test_what_prometheus_client_parses_is_what_was_written(written: list[Metric]) -> None:
    text = render_prometheus(written).decode()
    families = list(text_string_to_metric_families(text))
    assert len(families) == len(written)
    for family, metric in zip(families, written, strict=True):
        kind = {"counter": "counter", "histogram": "histogram"}.get(metric.spec.kind, "gauge")
        assert family.type == kind
        assert family.documentation.strip() == metric.spec.description.strip()  # the parser strips HELP text
        parsed = sorted(
            (
                (s.name, {k: (repr(float(v) + 0.0) if k == "le" else v) for k, v in s.labels.items()}, s.value)
                for s in family.samples
            ),
            key=repr,
        )
        expected = sorted(_expected(metric), key=repr)
        assert [(n, labels) for n, labels, _ in parsed] == [(n, labels) for n, labels, _ in expected]
        assert all(_same_number(a[2], b[2]) for a, b in zip(parsed, expected, strict=True)), (parsed, expected)


def test_names_follow_the_opentelemetry_compatibility_rules() -> None:
    assert (
        prometheus_name(Spec("http.server.request.duration", "histogram", "s"))
        == "http_server_request_duration_seconds"
    )
    assert (
        prometheus_name(Spec("tenantgate.metering.spool.size", "gauge", "By")) == "tenantgate_metering_spool_size_bytes"
    )
    assert prometheus_name(Spec("process.cpu.seconds", "counter", "s")) == "process_cpu_seconds_total"
    assert prometheus_name(Spec("9lives", "gauge")) == "_9lives"  # a name may not start with a digit
    assert prometheus_label("gen_ai.token.type") == "gen_ai_token_type"
