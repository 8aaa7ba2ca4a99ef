"""Metrics as ``ExportMetricsServiceRequest`` wire bytes, without protobuf's message classes.

The gateway's metrics (``otlp.to_metrics_data``) are sums, gauges and explicit-bucket histograms with string and
integer attributes: a fixed, small part of the OTLP schema, written here directly as spans are in ``spanwire``
(whose field helpers, attribute cache and resource/scope envelopes this reuses), so a worker never loads protobuf.
``tests/observability/test_metricwire.py`` checks that the bytes parse to exactly the message the SDK's encoder
produces. Data this encoder does not write (exemplars, exponential histograms) goes through the SDK's encoder.
"""

from __future__ import annotations

import struct
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum

from tenantgate.wire.spanwire import _DOUBLE, _ENVELOPES, _FIXED64, _attributes, _field, _varint

_INT64 = struct.Struct("<q")


def _number_point(point: Any, *, start: bool) -> bytes:
    out = [_attributes(7, point.attributes)]
    if start and point.start_time_unix_nano:
        out.append(b"\x11" + _FIXED64.pack(point.start_time_unix_nano))
    out.append(b"\x19" + _FIXED64.pack(point.time_unix_nano))
    value = point.value
    if isinstance(value, int):
        out.append(b"\x31" + _INT64.pack(value))
    else:
        out.append(b"\x21" + _DOUBLE.pack(value))
    return b"".join(out)


def _histogram_point(point: Any) -> bytes:
    out = [
        _attributes(9, point.attributes),
        b"\x11" + _FIXED64.pack(point.start_time_unix_nano),
        b"\x19" + _FIXED64.pack(point.time_unix_nano),
        b"\x21" + _FIXED64.pack(point.count),
        b"\x29" + _DOUBLE.pack(point.sum),
    ]
    if point.bucket_counts:
        out.append(_field(6, struct.pack(f"<{len(point.bucket_counts)}Q", *point.bucket_counts)))
    if point.explicit_bounds:
        out.append(_field(7, struct.pack(f"<{len(point.explicit_bounds)}d", *point.explicit_bounds)))
    if point.min is not None:
        out.append(b"\x59" + _DOUBLE.pack(point.min))
    if point.max is not None:
        out.append(b"\x61" + _DOUBLE.pack(point.max))
    return b"".join(out)


def _metric(metric: Metric) -> bytes:
    out = [_field(1, metric.name.encode())]
    if metric.description:
        out.append(_field(2, metric.description.encode()))
    if metric.unit:
        out.append(_field(3, metric.unit.encode()))
    data = metric.data
    if data.data_points:  # as the SDK's encoder: a metric without points carries no data field at all
        if isinstance(data, Gauge):
            points = b"".join(_field(1, _number_point(p, start=False)) for p in data.data_points)
            out.append(_field(5, points))
        elif isinstance(data, Sum):
            points = b"".join(_field(1, _number_point(p, start=True)) for p in data.data_points)
            flags = b"\x10" + _varint(data.aggregation_temporality.value) + (b"\x18\x01" if data.is_monotonic else b"")
            out.append(_field(7, points + flags))
        else:
            points = b"".join(_field(1, _histogram_point(p)) for p in data.data_points)
            out.append(_field(9, points + b"\x10" + _varint(data.aggregation_temporality.value)))
    return b"".join(out)


def _ours(data: MetricsData) -> bool:
    """Whether every metric is of the kinds written here (no exemplars, no exponential histograms)."""
    return all(
        isinstance(metric.data, Gauge | Sum | Histogram) and not any(p.exemplars for p in metric.data.data_points)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


def encode_metrics(data: MetricsData) -> bytes:
    """The serialised ``ExportMetricsServiceRequest`` of ``data``."""
    if not _ours(data):
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics as sdk_encode_metrics

        return bytes(sdk_encode_metrics(data).SerializePartialToString())
    out = []
    for resource_metrics in data.resource_metrics:
        scopes = []
        for scope_metrics in resource_metrics.scope_metrics:
            body = _ENVELOPES.scope(scope_metrics.scope)  # the scope, and its schema URL
            body += b"".join(_field(2, _metric(metric)) for metric in scope_metrics.metrics)
            scopes.append(_field(2, body))
        resource = resource_metrics.resource
        body = _ENVELOPES.resource(resource) + b"".join(scopes)
        if resource.schema_url:
            body += _field(3, resource.schema_url.encode())
        out.append(_field(1, body))
    return b"".join(out)
