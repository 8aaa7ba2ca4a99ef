"""The gateway's metric instruments: small, allocation-light aggregators recorded on the event loop.

Why not the OpenTelemetry SDK's instruments: measured on this machine, one SDK ``Histogram.record`` or
``Counter.add`` with five attributes costs 17-35 us (attribute cleaning, hashing a frozenset, a Measurement object
and locks per call), and a proxied request records six or seven of them. These instruments cost well under a
microsecond: label values are a tuple in a fixed order, a series is one dict lookup, a histogram bucket one bisect.
Everything is recorded from the event loop thread, so no locks are needed.

The same data leaves the process two ways (see ``exposition.py`` and ``otlp.py``): merged across workers on the
Prometheus ``/metrics`` endpoint, and as OpenTelemetry metrics over OTLP, per worker, with cumulative temporality.

Names and attributes follow OpenTelemetry conventions (dots); the Prometheus rendering converts them the way the
OpenTelemetry-to-Prometheus compatibility spec does (``http.server.request.duration`` in seconds becomes
``http_server_request_duration_seconds``; counters get ``_total``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

LabelValue = str | int
Labels = tuple[LabelValue, ...]
Kind = Literal["counter", "histogram", "gauge", "updowncounter"]
Aggregation = Literal["sum", "max", "min"]
GaugeReading = float | int | Iterable[tuple[Labels, float]]

# OpenTelemetry semantic-convention bucket boundaries.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
GENAI_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
GENAI_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
GENAI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str = ""
    description: str = ""
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    # How workers' values combine on /metrics (gauges only; counters and histograms always add up).
    aggregation: Aggregation = "sum"


class HistogramSeries:
    __slots__ = ("count", "counts", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")


class Counter:
    __slots__ = ("series", "spec")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.series: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float = 1) -> None:
        series = self.series
        series[labels] = series.get(labels, 0) + amount


class Histogram:
    __slots__ = ("buckets", "series", "spec")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.buckets = spec.buckets
        self.series: dict[Labels, HistogramSeries] = {}

    def record(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = HistogramSeries(len(self.buckets))
        series.counts[bisect_left(self.buckets, value)] += 1
        series.count += 1
        series.sum += value
        if value < series.min:
            series.min = value
        if value > series.max:
            series.max = value


class UpDownCounter:
    """A label-less level the hot path moves directly (``active.value += 1``)."""

    __slots__ = ("spec", "value")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.value = 0


@dataclass(slots=True)
class ObservableGauge:
    spec: MetricSpec
    callback: Callable[[], GaugeReading]


@dataclass(slots=True)
class ObservableCounter:
    spec: MetricSpec
    callback: Callable[[], GaugeReading]


Instrument = Counter | Histogram | UpDownCounter | ObservableGauge | ObservableCounter


@dataclass(slots=True)
class Point:
    labels: Labels
    value: float = 0.0
    counts: list[int] | None = None
    count: int = 0
    sum: float = 0.0
    min: float = 0.0
    max: float = 0.0


@dataclass(slots=True)
class MetricData:
    """One instrument's current values, detached from the live instrument (safe to serialise or export)."""

    spec: MetricSpec
    points: list[Point] = field(default_factory=list)


class LabelCap:
    """Bounds the values one label may take: the first ``limit`` distinct values, then ``other``.

    Used for tenants and models, whose values callers control; key ids never become labels at all.
    """

    __slots__ = ("limit", "seen")

    OTHER = "other"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, str] = {}

    def __call__(self, value: str | None, admit: bool = True) -> str:
        """``admit=False``: only a value already seen keeps its name (e.g. a model named by a failed request)."""
        if not value:
            return ""
        label = self.seen.get(value)
        if label is not None:
            return label
        if not admit or len(self.seen) >= self.limit:
            return self.OTHER
        self.seen[value] = value
        return value


class MetricRegistry:
    """Every instrument of one process; ``collect`` reads them all."""

    def __init__(self) -> None:
        self._instruments: dict[str, Instrument] = {}

    def _add(self, instrument: Instrument) -> None:
        name = instrument.spec.name
        if name in self._instruments:
            raise ValueError(f"metric {name!r} is already registered")
        self._instruments[name] = instrument

    def counter(self, name: str, *, unit: str = "", description: str = "", labels: Sequence[str] = ()) -> Counter:
        counter = Counter(MetricSpec(name, "counter", unit, description, tuple(labels)))
        self._add(counter)
        return counter

    def histogram(
        self,
        name: str,
        *,
        buckets: Sequence[float],
        unit: str = "",
        description: str = "",
        labels: Sequence[str] = (),
    ) -> Histogram:
        histogram = Histogram(MetricSpec(name, "histogram", unit, description, tuple(labels), tuple(buckets)))
        self._add(histogram)
        return histogram

    def up_down_counter(self, name: str, *, unit: str = "", description: str = "") -> UpDownCounter:
        level = UpDownCounter(MetricSpec(name, "updowncounter", unit, description))
        self._add(level)
        return level

    def register_gauge(
        self,
        name: str,
        callback: Callable[[], GaugeReading],
        *,
        unit: str = "",
        description: str = "",
        labels: Sequence[str] = (),
        aggregation: Aggregation = "sum",
    ) -> None:
        """A gauge read when metrics are collected (every scrape or export, never on the request path).

        ``callback`` returns a number, or ``(label values, number)`` pairs in the order of ``labels``. It runs on
        the event loop, so it must be quick and must not block; it may raise, which drops that gauge from one
        collection only. ``aggregation`` says how the values of several workers combine on ``/metrics``: ``sum``
        for per-worker amounts (a worker's own buffer), ``max``/``min`` for values every worker sees alike (a
        shared spool directory, a dependency's health).
        """
        self._add(
            ObservableGauge(MetricSpec(name, "gauge", unit, description, tuple(labels), (), aggregation), callback)
        )

    def register_counter(
        self,
        name: str,
        callback: Callable[[], GaugeReading],
        *,
        unit: str = "",
        description: str = "",
        labels: Sequence[str] = (),
    ) -> None:
        """A monotonic total kept elsewhere (e.g. the key cache's hit count), read at collection time."""
        self._add(ObservableCounter(MetricSpec(name, "counter", unit, description, tuple(labels)), callback))

    def names(self) -> list[str]:
        return list(self._instruments)

    def collect(self) -> list[MetricData]:
        out: list[MetricData] = []
        for instrument in self._instruments.values():
            data = _collect(instrument)
            if data is not None:
                out.append(data)
        return out


def _collect(instrument: Instrument) -> MetricData | None:
    spec = instrument.spec
    if isinstance(instrument, Counter):
        return MetricData(spec, [Point(labels, value=v) for labels, v in instrument.series.items()])
    if isinstance(instrument, Histogram):
        return MetricData(
            spec,
            [
                Point(labels, counts=list(s.counts), count=s.count, sum=s.sum, min=s.min, max=s.max)
                for labels, s in instrument.series.items()
            ],
        )
    if isinstance(instrument, UpDownCounter):
        return MetricData(spec, [Point((), value=instrument.value)])
    try:
        reading = instrument.callback()
    except Exception:
        return None
    if isinstance(reading, int | float):
        return MetricData(spec, [Point((), value=float(reading))])
    return MetricData(spec, [Point(tuple(labels), value=float(value)) for labels, value in reading])
