"""Replaying the dead-letter file (``tenantgate usage replay-rejected``) once an operator fixed the cause.

Each set-aside event is read from its original spool line, priced again (prices in effect at its time, as the
writer does) and written like a batch of the writer: insert-or-ignore on the event id, so running the replay twice,
or for an event that is stored already, changes nothing. The events the database still refuses stay in the file
with their new error; everything else leaves it. If the database is unavailable nothing is dropped from the file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from tenantgate.tenants.metering.deadletter import DeadLetters, encode_record, write_isolating
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.store import ROW_ID, EventStore, Row, row_of
from tenantgate.tenants.metering.writer import UNREADABLE, read_event

BATCH_SIZE = 500


@dataclass(slots=True)
class ReplayReport:
    rejected: int = 0
    """Set-aside events found (each event once, even if it was set aside twice)."""
    stored: int = 0
    """Written to the database now."""
    already_stored: int = 0
    """Accepted, but the database had the event id already (an earlier replay, or a copy in the spool)."""
    still_rejected: int = 0
    """Refused again (or no longer readable): kept in the dead-letter file."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def replay_rejected(directory: Path, store: EventStore, prices: PriceBook) -> ReplayReport:
    """Store what the dead-letter file of spool ``directory`` holds. Raises BlockingIOError if another replay
    of the directory is running, and the database's error if it is unavailable (the file is then kept whole)."""
    dead_letters = DeadLetters(directory)
    with dead_letters.replay_lock():
        claimed = dead_letters.claim()
        records = dead_letters.read(claimed)
        try:
            report, kept = await _replay(records, store, prices)
        except BaseException:
            if records:
                dead_letters.append(b"\n".join(records) + b"\n")
            dead_letters.release(claimed)
            raise
        if kept:
            dead_letters.append(b"".join(kept))
        dead_letters.release(claimed)
    return report


async def _replay(records: list[bytes], store: EventStore, prices: PriceBook) -> tuple[ReplayReport, list[bytes]]:
    report = ReplayReport()
    kept: list[bytes] = []
    seen: set[str] = set()
    events: list[Row] = []
    lines: list[bytes] = []
    for raw in records:
        try:
            line = orjson.loads(raw)["line"].encode()
        except (*UNREADABLE, AttributeError):
            kept.append(raw + b"\n")  # not a record any more (edited by hand?): keep it for a human
            report.still_rejected += 1
            continue
        try:
            event = read_event(prices, line)
        except UNREADABLE as error:
            kept.append(encode_record(_event_id(line), line, error))
            report.still_rejected += 1
            continue
        key = str(event["id"])
        if key in seen:
            continue
        seen.add(key)
        events.append(row_of(event))
        lines.append(line)
    report.rejected = len(seen) + report.still_rejected
    for start in range(0, len(events), BATCH_SIZE):
        batch = events[start : start + BATCH_SIZE]
        inserted, refused = await write_isolating(store, batch)
        for refusal in refused:
            kept.append(encode_record(batch[refusal.index][ROW_ID], lines[start + refusal.index], refusal.error))
        report.stored += inserted
        report.already_stored += len(batch) - len(refused) - inserted
        report.still_rejected += len(refused)
    return report, kept


def _event_id(line: bytes) -> object:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event.get("id") if isinstance(event, dict) else None
