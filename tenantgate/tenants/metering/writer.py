"""The background writer: from the spool to the database, in batches, in order, exactly once.

Each cycle fsyncs the spool, reads up to ``batch_size`` lines after a segment's checkpoint, prices them, writes
them in one transaction and only then advances the checkpoint. If the database is down or slow, the cycle fails,
nothing advances, and the writer retries with capped exponential backoff while the spool keeps growing on disk
(memory stays bounded by one batch). At start it adopts the segments of processes that are gone; it looks for
new orphans every ``ORPHAN_SCAN_SECONDS`` too, so a worker that died is replayed by its siblings. On shutdown it
runs a last cycle within a deadline; whatever it could not write stays in the spool for the next start.

A batch the database refuses while it is up (one bad event makes the whole transaction fail) is written around
the events it refuses; those go to the spool directory's dead-letter file before the checkpoint advances
(deadletter.py), so one event cannot stop usage from being stored for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson

from tenantgate.tenants.metering.deadletter import DeadLetters, Refusal, encode_record, write_isolating
from tenantgate.tenants.metering.events import measure_of, tools_of, usage_of
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.spool import Segment, Spool
from tenantgate.tenants.metering.store import COLUMN_NAMES, ROW_ID, EventStore, Row
from tenantgate.tenants.metering.usage_event import REQUIRED_FIELDS, SHARED_FIELDS

log = logging.getLogger("tenantgate.metering")

ORPHAN_SCAN_SECONDS = 30.0
PRICE_REFRESH_SECONDS = 30.0
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 5.0

_REQUIRED = REQUIRED_FIELDS  # what a spooled line must have (usage_event.py)
_UNPRICED = COLUMN_NAMES.index("unpriced")
_MODEL = COLUMN_NAMES.index("model")

PriceRefresher = Callable[[PriceBook], Awaitable[None]]
# What makes a spool line unreadable (not JSON, not an event, a field of the wrong type).
UNREADABLE = (orjson.JSONDecodeError, KeyError, TypeError, ValueError)
PARSE_SLICE = 25  # spool lines parsed and priced between two yields to the event loop (~0.2 ms)
RELEASE_SLICE = 500  # written events freed between two yields


# Row fields whose values repeat from event to event (tenant, key, model, endpoint...): one string object per
# distinct value in a batch instead of one per event.
_SHARED_FIELDS = tuple(index for index, name in enumerate(COLUMN_NAMES) if name in SHARED_FIELDS)


def _compact(event: dict[str, Any], shared: dict[str, str]) -> Row:
    """The event's row, its repeated strings shared through ``shared``. A batch of thousands of events is held while
    it is written (and the next one while it is read): as rows sharing their strings, an event takes about 0.5 kB
    instead of 2.7 kB as a dict beside its spool line, and the worker's peak memory under load is that much lower."""
    values = [event.get(name) for name in COLUMN_NAMES]
    for index in _SHARED_FIELDS:
        value = values[index]
        if value.__class__ is str:
            values[index] = shared.setdefault(value, value)
    return tuple(values)


async def _release(rows: list[Row]) -> None:
    """Free a written batch a slice at a time: dropped in one go, the last reference to 3,000 events held the
    event loop for milliseconds of deallocation."""
    while rows:
        del rows[-RELEASE_SLICE:]
        await asyncio.sleep(0)


class _Batch(NamedTuple):
    rows: list[Row]
    start: int
    """Spool offset of the batch's first line."""
    read: int
    """Lines read, readable or not."""
    end: int
    line_numbers: list[int] | None
    """Which of the lines read each row comes from, where unreadable lines were skipped (None: row i is line i).
    The lines themselves are not kept: a refused event's line is read from the spool again (rare)."""


class ModelCounts:
    """Events per model name for a metric label: the first ``limit`` names as they are, later ones as ``other``
    (model names come from requests)."""

    OTHER = "other"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def add(self, model: str, count: int = 1) -> None:
        if model not in self.counts and len(self.counts) >= self.limit:
            model = self.OTHER
        self.counts[model] = self.counts.get(model, 0) + count

    def readings(self) -> list[tuple[tuple[str], float]]:
        return [((model,), float(count)) for model, count in self.counts.items()]


class MeterWriter:
    def __init__(
        self,
        spool: Spool,
        store: EventStore,
        prices: PriceBook,
        *,
        interval: float,
        batch_size: int,
        refresh_prices: PriceRefresher | None = None,
        model_label_limit: int = 100,
    ) -> None:
        self.spool = spool
        self.store = store
        self.prices = prices
        self.interval = interval
        self.batch_size = batch_size
        self._refresh_prices = refresh_prices
        self._prices_refreshed = float("-inf")
        self._prices_stale = True
        self._prices_lock = asyncio.Lock()
        self._orphans_scanned = float("-inf")
        self._cycle_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lines_at_last_cycle = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dead_letters = DeadLetters(spool.directory)
        self.written = 0
        self.rejected = 0
        self.unpriced = ModelCounts(model_label_limit)
        """Unpriced billable events written (since start), by model."""
        self.failures = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="tenantgate-meter-writer")

    async def refresh_prices(self) -> None:
        """Reload the price overrides now. Serialized, so a slow periodic reload that read the table before a
        change cannot land after the reload that saw it."""
        if self._refresh_prices is None:
            return
        async with self._prices_lock:
            # Cleared before reading: a change announced while the table is being read sets it again.
            self._prices_stale = False
            self._prices_refreshed = time.monotonic()
            try:
                await self._refresh_prices(self.prices)
            except BaseException:
                self._prices_stale = True
                raise

    def prices_changed(self) -> None:
        """Another process changed the overrides: reload them in the next cycle, which starts now."""
        self._prices_stale = True
        self._wake.set()

    def notify(self) -> None:
        """Called after each append: wake the writer early once a full batch is waiting."""
        if self.spool.appended_lines - self._lines_at_last_cycle >= self.batch_size:
            self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.failures += 1
                self.last_error = type(exc).__name__
                delay = min(BACKOFF_FIRST_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)
                delay *= random.uniform(0.8, 1.2)
                # The message of a database error can carry a whole batch of parameters: log the type only.
                log.warning("metering: writing usage failed (%s), retrying in %.1fs", self.last_error, delay)
                await self._sleep(delay)
                continue
            failures = 0
            await self._sleep(self.interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def flush(self) -> int:
        """Write everything spooled so far (including adopted segments). Raises if the database refuses."""
        async with self._cycle_lock:
            self._lines_at_last_cycle = self.spool.appended_lines
            now = time.monotonic()
            if self._prices_stale or now - self._prices_refreshed >= PRICE_REFRESH_SECONDS:
                await self.refresh_prices()
            if now - self._orphans_scanned >= ORPHAN_SCAN_SECONDS:
                await asyncio.to_thread(self.spool.adopt_orphans)
                self._orphans_scanned = now
            if self.spool.held:
                with contextlib.suppress(OSError):
                    self.spool.retry_held()
            await asyncio.to_thread(self.spool.sync_active)
            written = 0
            for segment in self.spool.segments():
                written += await self._drain(segment)
            if self.spool.needs_rotation():
                self.spool.install(await asyncio.to_thread(self.spool.new_segment))
            await asyncio.to_thread(self.spool.drop_finished)
            return written

    async def _drain(self, segment: Segment) -> int:
        """Write a segment's lines after its checkpoint, batch by batch, reading the next batch (parse and price,
        in a thread) while the database writes the current one."""
        # Only bytes whose write() returned: a concurrent append may be half-copied into the page cache.
        limit = segment.size if segment.active else None
        written = 0
        position = segment.committed
        pending: asyncio.Task[_Batch] | None = asyncio.create_task(self._read_batch(segment, position, limit))
        try:
            while pending is not None:
                batch = await pending
                pending = None
                if batch.end <= position:
                    break
                if batch.read >= self.batch_size:
                    pending = asyncio.create_task(self._read_batch(segment, batch.end, limit))
                inserted, refused = await write_isolating(self.store, batch.rows)
                if refused:
                    await asyncio.to_thread(self._dead_letter, segment, batch, refused)
                self._count_unpriced(batch.rows, refused)
                await asyncio.to_thread(segment.commit, batch.end)
                position = batch.end
                self.written += inserted
                written += inserted
                await _release(batch.rows)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
        return written

    async def _read_batch(self, segment: Segment, start: int, limit: int | None) -> _Batch:
        """The next batch: its bytes read in a thread, parsed and priced on the loop a slice at a time. Parsing is
        CPU work: in a thread it held the GIL in bursts that kept the event loop waiting for it (the p99 of every
        request in flight then); in slices it only ever delays the loop by a fraction of a millisecond."""
        block, read, end = await asyncio.to_thread(segment.read_block, self.batch_size, limit, start)
        rows: list[Row] = []
        shared: dict[str, str] = {}
        line_numbers: list[int] = []
        damaged = []
        with memoryview(block) as view:
            position = 0
            for index in range(read):
                if index and index % PARSE_SLICE == 0:
                    await asyncio.sleep(0)
                newline = block.index(b"\n", position)
                line = view[position:newline]
                position = newline + 1
                try:
                    rows.append(_compact(read_event(self.prices, line), shared))
                    line_numbers.append(index)
                except UNREADABLE as exc:
                    damaged.append(bytes(line))
                    log.error("metering: unreadable spool line in %s (%s)", segment.path.name, type(exc).__name__)
        del block
        if damaged:
            # A damaged line cannot become an event; keep its bytes for a human and move on.
            await asyncio.to_thread(self._quarantine, segment, damaged)
        return _Batch(rows, start, read, end, line_numbers if damaged else None)

    def _count_unpriced(self, rows: list[Row], refused: list[Refusal]) -> None:
        skipped = {r.index for r in refused}
        for index, row in enumerate(rows):
            if row[_UNPRICED] is not None and index not in skipped:
                self.unpriced.add(row[_MODEL])

    @staticmethod
    def _quarantine(segment: Segment, lines: list[bytes]) -> None:
        quarantine = segment.path.with_name(segment.path.stem + ".rejected")
        with quarantine.open("ab") as handle:
            handle.write(b"".join(line + b"\n" for line in lines))
        log.error("metering: %d unreadable spool line(s) moved to %s", len(lines), quarantine.name)

    def _dead_letter(self, segment: Segment, batch: _Batch, refused: list[Refusal]) -> None:
        """Set the refused events aside (durably, before the checkpoint passes their lines) and say so."""
        lines, _ = segment.read(batch.read, batch.end, batch.start)  # the same lines: the checkpoint is before them
        numbers = batch.line_numbers
        records = [
            encode_record(batch.rows[r.index][ROW_ID], lines[r.index if numbers is None else numbers[r.index]], r.error)
            for r in refused
        ]
        self.dead_letters.append(b"".join(records))
        self.rejected += len(refused)
        for refusal in refused:
            # The event id and the error type only: a driver's message can carry the parameters of a whole batch.
            log.error(
                "metering: the database refused usage event %.64s (%s); kept in %s for `tenantgate usage "
                "replay-rejected`",
                batch.rows[refusal.index][ROW_ID],
                type(refusal.error).__name__,
                self.dead_letters.path,
            )

    async def close(self, deadline: float) -> None:
        """Stop the loop, write what is left within ``deadline`` seconds, release the spool."""
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(deadline):
                if self._task is not None:
                    await self._task  # finishes its current cycle (or backoff wait), then exits
                await self.flush()
        except Exception as exc:
            log.warning(
                "metering: could not write all usage before exit (%s); it stays in the spool %s for the next start",
                type(exc).__name__,
                self.spool.directory,
            )
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self.spool.close()


def read_event(prices: PriceBook, line: bytes | memoryview) -> dict[str, Any]:
    """The priced event of a spool line; raises one of ``UNREADABLE`` when the line is not a usage event."""
    event = orjson.loads(line)
    if not isinstance(event, dict) or not event.keys() >= _REQUIRED:
        raise ValueError("not a usage event")
    return price_event(prices, event)


def price_event(prices: PriceBook, event: dict[str, Any]) -> dict[str, Any]:
    """Add cost, price version and (if no price covers it) why it is unpriced to a spooled event (in place).
    Deterministic: prices in effect at its time; batch work at the batch price (events.measure_of)."""
    event["batch"] = event.get("batch") is True
    tools = tools_of(event)  # lines spooled before hosted tools were metered name none
    event["web_search_calls"] = tools.web_search_calls
    event["file_search_calls"] = tools.file_search_calls
    event["code_interpreter_sessions"] = tools.code_interpreter_sessions
    cost = prices.cost(
        event["model"],
        usage_of(event) if event["billable"] else None,
        measure=measure_of(event),
        tenant_id=event["tenant_id"],
        at=event["occurred_at"],
        served_model=event.get("response_model") or event.get("upstream_model"),
    )
    event["cost_input_nusd"] = cost.input_nusd
    event["cost_cached_input_nusd"] = cost.cached_input_nusd
    event["cost_output_nusd"] = cost.output_nusd
    event["cost_unit_nusd"] = cost.unit_nusd
    event["cost_web_search_nusd"] = cost.web_search_nusd
    event["cost_file_search_nusd"] = cost.file_search_nusd
    event["cost_code_interpreter_nusd"] = cost.code_interpreter_nusd
    event["price_version"] = cost.version
    event["unit_price_usd"] = None if cost.unit_price is None else format(cost.unit_price.normalize(), "f")
    event["unpriced"] = cost.unpriced
    return event
