"""The OpenTelemetry SDK's exporter interfaces around tenantgate's own OTLP/HTTP sender and encoders (wire/)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tenantgate.wire.metricwire import encode_metrics
from tenantgate.wire.otlphttp import OtlpHttpConfig, OtlpHttpSender
from tenantgate.wire.spanwire import encode_spans

log = logging.getLogger("tenantgate.telemetry")


class OtlpHttpSpanExporter(SpanExporter):
    def __init__(self, variables: Mapping[str, str], sender: OtlpHttpSender | None = None) -> None:
        """``variables``: the ``OTEL_EXPORTER_OTLP_*`` settings (``Settings.otlp_variables()``)."""
        self.sender = sender or OtlpHttpSender(OtlpHttpConfig.from_variables(variables, "traces"), "traces")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            data = encode_spans(spans)
        except Exception as error:  # never let one odd span break the export thread
            log.error("failed to encode a span batch (%s)", type(error).__name__)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self.sender.send(data) else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.sender.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # nothing is buffered here: the span batcher holds the queue


class OtlpHttpMetricExporter(MetricExporter):
    def __init__(self, variables: Mapping[str, str], sender: OtlpHttpSender | None = None) -> None:
        super().__init__()
        self.sender = sender or OtlpHttpSender(OtlpHttpConfig.from_variables(variables, "metrics"), "metrics")

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            data = encode_metrics(metrics_data)
        except Exception as error:
            log.error("failed to encode metrics for export (%s)", type(error).__name__)
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS if self.sender.send(data) else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.sender.close()
