"""The span batcher: everything ended is exported once, in bounded batches, on time and at shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags

from tenantgate.observability.spanbatch import SpanBatcher


class Recorder(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.exported = threading.Event()
        self.shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append([span.name for span in spans])
        self.exported.set()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


def _span(number: int) -> ReadableSpan:
    return ReadableSpan(f"span-{number}", context=SpanContext(1, number + 1, False, TraceFlags(1)))


def test_a_full_batch_leaves_at_once_and_the_rest_at_shutdown() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay=60, max_queue_size=100, max_batch=4)
    for number in range(4):
        batcher.on_end(_span(number))
    assert recorder.exported.wait(5), "a full batch must not wait for the schedule delay"
    batcher.on_end(_span(4))
    batcher.shutdown()
    assert recorder.batches == [["span-0", "span-1", "span-2", "span-3"], ["span-4"]]
    assert recorder.shut


def test_spans_leave_after_the_schedule_delay_and_the_queue_is_bounded() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay=0.2, max_queue_size=3, max_batch=512)
    for number in range(5):
        batcher.on_end(_span(number))
    started = time.monotonic()
    assert recorder.exported.wait(5)
    assert time.monotonic() - started < 2
    assert recorder.batches == [["span-0", "span-1", "span-2"]] and batcher.dropped == 2
    batcher.shutdown()


def test_force_flush_exports_what_is_waiting_and_nothing_twice() -> None:
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay=60, max_queue_size=100, max_batch=10)
    threads = [threading.Thread(target=lambda n=n: batcher.on_end(_span(n))) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert batcher.force_flush()
    batcher.shutdown()
    names = [name for batch in recorder.batches for name in batch]
    assert sorted(names) == sorted(f"span-{n}" for n in range(8))


def test_a_forked_child_gets_its_own_export_thread() -> None:
    """What os.register_at_fork runs in a child: the parent's thread does not exist there."""
    recorder = Recorder()
    batcher = SpanBatcher(recorder, schedule_delay=0.1, max_queue_size=100, max_batch=512)
    parent_thread = batcher._thread
    batcher.on_end(_span(0))  # waiting in the parent: a child must not export it a second time
    batcher._after_fork()
    assert batcher._thread is not parent_thread and batcher._thread.is_alive()
    batcher.on_end(_span(1))
    assert recorder.exported.wait(5)
    batcher.shutdown()
    assert [name for batch in recorder.batches for name in batch] == ["span-1"]
