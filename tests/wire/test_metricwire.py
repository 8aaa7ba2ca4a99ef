"""The direct OTLP metrics encoder: its bytes parse to exactly the message the SDK's own encoder builds."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics as sdk_encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from tenantgate.observability.metrics import MetricRegistry
from tenantgate.observability.otlp import to_metrics_data
from tenantgate.wire.metricwire import encode_metrics

RESOURCE = Resource.create({"service.name": "tenantgate", "service.instance.id": "w-1"})
SCHEMA_RESOURCE = Resource({"service.name": "tenantgate"}, "https://opentelemetry.io/schemas/1.26.0")
SCOPE = InstrumentationScope("tenantgate", "1.2.3")
START, NOW = 1_700_000_000_000_000_000, 1_700_000_060_123_456_789
CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA


def _point(value: float, **attributes: str | int) -> NumberDataPoint:
    return NumberDataPoint(attributes, START, NOW, value)


def _histogram_point(**overrides: object) -> HistogramDataPoint:
    values: dict[str, object] = {
        "attributes": {"gen_ai.token.type": "input", "http.response.status_code": 200},
        "start_time_unix_nano": START,
        "time_unix_nano": NOW,
        "count": 7,
        "sum": 1234.5,
        "bucket_counts": [0, 2, 4, 1, 0],
        "explicit_bounds": [1.0, 4.0, 16.0, 64.0],
        "min": 0.5,
        "max": 60.25,
    }
    values.update(overrides)
    return HistogramDataPoint(**values)  # type: ignore[arg-type]


def _data(*metrics: Metric, resource: Resource = RESOURCE, scope: InstrumentationScope = SCOPE) -> MetricsData:
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, list(metrics), "")], resource.schema_url)])


CASES = {
    "monotonic sum, int and float values": _data(
        Metric(
            "requests",
            "Requests served",
            "{request}",
            Sum([_point(3, route="/v1/chat"), _point(2.5)], CUMULATIVE, True),
        )
    ),
    "up-down sum, negative and big ints": _data(
        Metric("inflight", "", "", Sum([_point(-4, tenant="t1"), _point(2**62)], DELTA, False))
    ),
    "gauge": _data(Metric("up", "Whether it is up", "1", Gauge([_point(1.0, dependency="redis"), _point(0)]))),
    "histogram with min and max": _data(
        Metric("gen_ai.client.token.usage", "Tokens", "{token}", Histogram([_histogram_point()], CUMULATIVE))
    ),
    "histogram without min, max or buckets": _data(
        Metric(
            "d",
            "",
            "s",
            Histogram([_histogram_point(min=None, max=None, bucket_counts=[], explicit_bounds=[], sum=0)], DELTA),
        )
    ),
    "metric without points": _data(Metric("empty", "nothing yet", "1", Sum([], CUMULATIVE, True))),
    "schema URLs, scope without version": _data(
        Metric("x", "", "", Gauge([_point(1)])),
        resource=SCHEMA_RESOURCE,
        scope=InstrumentationScope("tenantgate.redis", None, "https://opentelemetry.io/schemas/1.26.0"),
    ),
    "exemplars (the SDK's encoder)": _data(
        Metric(
            "with exemplar",
            "",
            "",
            Sum(
                [NumberDataPoint({}, START, NOW, 1, exemplars=[Exemplar({}, 1.0, NOW, 0x1, 0x2)])],
                CUMULATIVE,
                True,
            ),
        )
    ),
}


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_encoded_bytes_parse_to_the_sdk_encoders_message(data: MetricsData) -> None:
    expected = sdk_encode_metrics(data)
    assert ExportMetricsServiceRequest.FromString(encode_metrics(data)) == expected
    assert ExportMetricsServiceRequest.FromString(encode_metrics(data)) == expected  # again, from the caches


def test_the_gateways_own_metrics_encode_as_the_sdk_would() -> None:
    registry = MetricRegistry()
    tokens = registry.histogram(
        "gen_ai.client.token.usage",
        buckets=(1, 4, 16),
        unit="{token}",
        labels=("gen_ai.token.type", "gen_ai.request.model"),
    )
    tokens.record(("input", "gpt-4o-mini"), 10)
    tokens.record(("output", "gpt-4o-mini"), 3)
    requests = registry.counter("tenantgate.requests", unit="{request}", description="Requests", labels=("status",))
    requests.add(("200",))
    registry.up_down_counter("tenantgate.inflight").value += 2
    registry.register_gauge("tenantgate.build.info", lambda: [(("1.0",), 1.0)], labels=("version",))
    data = to_metrics_data(registry.collect(), RESOURCE, SCOPE, START)

    parsed = ExportMetricsServiceRequest.FromString(encode_metrics(data))

    assert parsed == sdk_encode_metrics(data)
    metrics = {m.name: m for m in parsed.resource_metrics[0].scope_metrics[0].metrics}
    assert sum(p.count for p in metrics["gen_ai.client.token.usage"].histogram.data_points) == 2
    assert metrics["tenantgate.requests"].sum.data_points[0].as_int == 1
