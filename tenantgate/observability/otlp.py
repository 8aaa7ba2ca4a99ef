"""Exporters chosen by the standard ``OTEL_*`` variables, and our metrics in the OpenTelemetry data model.

``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (comma lists of ``otlp``, ``console``, ``none``; metrics
also accept ``prometheus``, which is the ``/metrics`` endpoint and always on while metrics are enabled) and
``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL`` (``http/protobuf`` or ``grpc``) are read through Settings. The
OTLP exporters read their own endpoint, headers, timeout, compression and certificate variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...):
over gRPC the SDK's exporters, over HTTP ours (otlphttp.py: no requests, no protobuf in the worker).
"""

from __future__ import annotations

import time

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from tenantgate.observability.metrics import MetricData, Point
from tenantgate.settings import Settings


def _names(value: str) -> list[str]:
    # Settings validated the names (settings.py: _known_exporters).
    return value.split(",")


def span_exporters(settings: Settings) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _names(settings.otel_traces_exporter):
        if name == "otlp":
            if (settings.otel_exporter_otlp_traces_protocol or settings.otel_exporter_otlp_protocol) == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

                exporters.append(GrpcSpans())
            else:
                from tenantgate.observability.otlphttp import OtlpHttpSpanExporter

                exporters.append(OtlpHttpSpanExporter(settings.otlp_variables()))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
    return exporters


def metric_exporters(settings: Settings) -> list[MetricExporter]:
    exporters: list[MetricExporter] = []
    for name in _names(settings.otel_metrics_exporter):
        if name == "otlp":
            if (settings.otel_exporter_otlp_metrics_protocol or settings.otel_exporter_otlp_protocol) == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

                exporters.append(Grpc())
            else:
                from tenantgate.observability.otlphttp import OtlpHttpMetricExporter

                exporters.append(OtlpHttpMetricExporter(settings.otlp_variables()))
        elif name == "console":
            exporters.append(ConsoleMetricExporter())
    return exporters


def to_metrics_data(
    metrics: list[MetricData], resource: Resource, scope: InstrumentationScope, start_ns: int
) -> MetricsData:
    """Our cumulative values as OpenTelemetry metric points (for the OTLP and console exporters)."""
    now = time.time_ns()
    out: list[Metric] = []
    for metric in metrics:
        spec = metric.spec
        if spec.kind == "histogram":
            histogram_points = [
                HistogramDataPoint(
                    attributes=_attributes(spec.labels, p),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now,
                    count=p.count,
                    sum=p.sum,
                    bucket_counts=list(p.counts or ()),
                    explicit_bounds=list(spec.buckets),
                    min=p.min,
                    max=p.max,
                )
                for p in metric.points
            ]
            data: Sum | Gauge | Histogram = Histogram(histogram_points, AggregationTemporality.CUMULATIVE)
        else:
            points = [
                NumberDataPoint(
                    attributes=_attributes(spec.labels, p),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now,
                    value=p.value,
                )
                for p in metric.points
            ]
            if spec.kind == "counter":
                data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
            elif spec.kind == "updowncounter":
                data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=False)
            else:
                data = Gauge(points)
        out.append(Metric(spec.name, spec.description, spec.unit, data))
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, out, "")], "")])


def _attributes(names: tuple[str, ...], point: Point) -> dict[str, str | int]:
    return {name: value for name, value in zip(names, point.labels, strict=False) if value != ""}
