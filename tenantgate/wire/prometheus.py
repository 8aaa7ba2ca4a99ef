"""The Prometheus text exposition format (version 0.0.4), written directly.

Why not prometheus_client: its registry, metric classes and multiprocess mode would replace the gateway's own
instruments (observability/metrics.py, a fraction of a microsecond per record, and a snapshot merge that keeps
counters of restarted workers); and what is left to do - turn finished numbers into text - is a page of code.
``tests/wire/test_prometheus.py`` parses what this writes with prometheus_client's own parser, for generated
names, label values and numbers.

Names follow the OpenTelemetry-to-Prometheus compatibility rules: dots and other characters become underscores,
the unit becomes a suffix (``s`` -> ``_seconds``, ``By`` -> ``_bytes``), counters end in ``_total``. Label values
are escaped as the format requires (backslash, double quote, newline); anything else passes through as UTF-8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


class SpecLike(Protocol):
    """What the writer reads of a metric's declaration (observability/metrics.py's ``MetricSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...  # counter, histogram; anything else is written as a gauge
    @property
    def unit(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def buckets(self) -> Sequence[float]: ...


class PointLike(Protocol):
    """One series: its label values in the order of the spec's labels (an empty value leaves the label out)."""

    @property
    def labels(self) -> Sequence[str | int]: ...
    @property
    def value(self) -> float: ...
    @property
    def counts(self) -> Sequence[int] | None: ...  # histograms: per bucket, the last one above every bound
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...


class MetricLike(Protocol):
    @property
    def spec(self) -> SpecLike: ...
    @property
    def points(self) -> Sequence[PointLike]: ...


def _sanitized(name: str, invalid: re.Pattern[str]) -> str:
    name = invalid.sub("_", name)
    return "_" + name if not name or name[0].isdigit() else name


def prometheus_name(spec: SpecLike) -> str:
    """The OpenTelemetry-to-Prometheus name: dots to underscores, the unit as a suffix, ``_total`` on counters."""
    name = _sanitized(spec.name, _INVALID_NAME)
    unit = spec.unit
    if unit and not unit.startswith("{"):
        suffix = _UNIT_SUFFIXES.get(unit, _INVALID_NAME.sub("_", unit))
        if suffix == "ratio" and spec.kind != "gauge":
            suffix = ""
        if suffix and not name.endswith("_" + suffix):
            name = f"{name}_{suffix}"
    if spec.kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return name


def prometheus_label(name: str) -> str:
    return _sanitized(name, _INVALID_LABEL)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: Sequence[str], values: Sequence[str | int], extra: str = "") -> str:
    parts = [f'{name}="{_escape(str(value))}"' for name, value in zip(names, values, strict=False) if value != ""]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def render_prometheus(metrics: Iterable[MetricLike]) -> bytes:
    lines: list[str] = []
    for metric in metrics:
        spec = metric.spec
        name = prometheus_name(spec)
        kind = {"counter": "counter", "histogram": "histogram"}.get(spec.kind, "gauge")
        if spec.description:
            help_text = spec.description.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        label_names = tuple(prometheus_label(label) for label in spec.labels)
        for point in sorted(metric.points, key=lambda p: tuple(str(v) for v in p.labels)):
            if kind != "histogram":
                lines.append(f"{name}{_label_text(label_names, point.labels)} {_number(point.value)}")
                continue
            counts = point.counts or []
            cumulative = 0
            for bound, count in zip((*spec.buckets, math.inf), counts, strict=False):
                cumulative += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{name}_bucket{_label_text(label_names, point.labels, le)} {cumulative}")
            labels = _label_text(label_names, point.labels)
            lines.append(f"{name}_sum{labels} {_number(point.sum)}")
            lines.append(f"{name}_count{labels} {point.count}")
    lines.append("")
    return "\n".join(lines).encode()
