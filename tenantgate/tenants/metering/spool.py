"""The local write-ahead spool: usage events are appended here before a client gets the end of its response.

Why a local file and not Redis: the append is one ``write(2)`` into the page cache (a few microseconds, no network
round trip, no dependency that can be down), it works on a laptop without Redis, and a SIGKILLed process loses
nothing because the page cache belongs to the kernel. What a file cannot survive is the machine itself crashing
before the data reaches the disk: the writer fsyncs the spool on every flush cycle (by default every second), so
that window is the last flush interval. The spool directory must outlive the process: on Kubernetes, a volume
that survives container restarts (an emptyDir does) and, to survive pod deletion while the database is down, a
persistent one.

Layout: each process appends to its own segment ``seg-<time-ordered id>.spool`` and holds an exclusive ``flock``
on it for as long as it lives. The kernel drops that lock when the process dies, however it dies, so any process
that can take the lock of a segment it does not own knows the owner is gone and adopts (replays) the segment.
``<segment>.ckpt`` holds the byte offset up to which the segment's events are committed to the database; it is
only ever advanced after the commit. Lines past it are replayed; replaying a committed line is harmless because
the store ignores event ids it already has.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections import deque
from pathlib import Path

from tenantgate.ids import new_id

log = logging.getLogger("tenantgate.metering")

_READ_CHUNK = 1 << 20
# Lines kept in memory while the spool cannot be written (disk full, I/O error), retried on every cycle.
MAX_HELD_LINES = 100_000


class Segment:
    def __init__(self, path: Path, fd: int, *, active: bool) -> None:
        self.path = path
        self.fd = fd
        self.active = active
        self.size = os.fstat(fd).st_size
        self.committed = self._read_checkpoint()
        self.synced = self.size

    @property
    def checkpoint_path(self) -> Path:
        return self.path.with_suffix(".ckpt")

    def _read_checkpoint(self) -> int:
        try:
            value = int(self.checkpoint_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        return max(0, min(value, self.size))

    def read(self, max_lines: int, limit: int | None, start: int | None = None) -> tuple[list[bytes], int]:
        """Up to ``max_lines`` complete lines from ``start`` (default: the checkpoint), not past byte ``limit``,
        and the offset where they end."""
        block, _, end = self.read_block(max_lines, limit, start)
        return [bytes(line) for line in block.split(b"\n")[:-1]], end

    def read_block(self, max_lines: int, limit: int | None, start: int | None = None) -> tuple[bytearray, int, int]:
        """As ``read``, the lines as one buffer (each ending with its newline), with their count. The writer's
        batch of thousands of lines is then held once while it is parsed, not three times over (the chunks
        read, their join and the split lines: 11 MB at the peak for 5,000 events)."""
        start = self.committed if start is None else start
        end = os.fstat(self.fd).st_size if limit is None else limit
        block = bytearray()
        lines = 0
        position = start
        while position < end and lines < max_lines:
            data = os.pread(self.fd, min(_READ_CHUNK, end - position), position)
            if not data:
                break
            count = data.count(b"\n")
            if lines + count > max_lines:
                cut = -1
                for _ in range(max_lines - lines):
                    cut = data.index(b"\n", cut + 1)
                data = data[: cut + 1]
                count = max_lines - lines
            block += data
            lines += count
            position += len(data)
        del block[block.rfind(b"\n") + 1 :]  # a trailing line without its newline is not written yet (or torn)
        return block, lines, start + len(block)

    def commit(self, offset: int) -> None:
        """Record that everything before ``offset`` is in the database (after the commit, never before)."""
        temporary = self.path.with_suffix(".ckpt.tmp")
        temporary.write_text(str(offset))
        os.replace(temporary, self.checkpoint_path)
        self.committed = offset

    def sync(self) -> None:
        if self.size != self.synced:
            os.fsync(self.fd)
            self.synced = self.size

    def remove(self) -> None:
        for path in (self.path, self.checkpoint_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


class Spool:
    def __init__(self, directory: Path, *, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.active: Segment | None = None
        self.sealed: list[Segment] = []  # our own rotated segments and adopted orphans, oldest first
        self.appended_lines = 0
        self.held: deque[bytes] = deque()
        self.dropped_lines = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.active = self._create_segment()

    def _create_segment(self) -> Segment:
        path = self.directory / f"seg-{new_id('p')[2:]}.spool"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        fsync_directory(self.directory)
        return Segment(path, fd, active=True)

    def append(self, data: bytes) -> None:
        """Append one or more complete lines. Raises OSError (e.g. disk full); a partial write is completed."""
        segment = self.active
        assert segment is not None, "spool used before open()"
        view = memoryview(data)
        start = segment.size
        try:
            while view:
                written = os.write(segment.fd, view)
                segment.size += written
                view = view[written:]
        except OSError:
            if segment.size != start:  # never leave half a line that the next one would be glued to
                with contextlib.suppress(OSError):
                    os.ftruncate(segment.fd, start)
                segment.size = start
            raise
        self.appended_lines += 1

    def append_or_hold(self, data: bytes) -> None:
        """Append; if the disk refuses, keep the line in memory (bounded) until ``retry_held`` succeeds."""
        try:
            if self.held:
                self.retry_held()
            if not self.held:
                self.append(data)
                return
        except OSError as exc:
            log.error("metering: cannot append to the spool (%s); holding usage events in memory", exc.strerror)
        if len(self.held) >= MAX_HELD_LINES:
            self.held.popleft()
            self.dropped_lines += 1
            log.critical("metering: spool unwritable and memory buffer full: a usage event was lost")
        self.held.append(data)

    def retry_held(self) -> None:
        while self.held:
            self.append(self.held[0])
            self.held.popleft()

    def segments(self) -> list[Segment]:
        """Everything to replay, in order: sealed segments (oldest first), then the active one."""
        return [*self.sealed, *([self.active] if self.active is not None else [])]

    def needs_rotation(self) -> bool:
        return self.active is not None and self.active.size >= self.segment_bytes

    def new_segment(self) -> Segment:
        """A fresh, locked segment (file I/O: may run in a thread)."""
        return self._create_segment()

    def install(self, segment: Segment) -> None:
        """Make ``segment`` take the appends and seal the previous one. Call on the thread that appends, so that
        no append can land in the old segment afterwards (its readers then read it to the end, unbounded)."""
        old, self.active = self.active, segment
        if old is not None:
            old.active = False
            self.sealed.append(old)

    def adopt_orphans(self) -> int:
        """Lock and take over the segments of processes that are gone. Returns how many were adopted."""
        mine = {s.path for s in self.segments()}
        adopted = 0
        for path in sorted(self.directory.glob("seg-*.spool")):
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # its owner is alive (or another process adopted it first)
                continue
            try:
                same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # replayed and removed by someone else between our open and our lock
                os.close(fd)
                continue
            self.sealed.append(Segment(path, fd, active=False))
            adopted += 1
        self.sealed.sort(key=lambda s: s.path.name)
        if adopted:
            log.info("metering: adopted %d spool segment(s) of stopped processes for replay", adopted)
        return adopted

    def drop_finished(self) -> None:
        """Remove sealed segments whose every complete line is committed."""
        for segment in list(self.sealed):
            if segment.committed >= segment.size or _only_torn_tail(segment):
                if segment.committed < segment.size:
                    log.error(
                        "metering: discarding %d unterminated bytes at the end of %s (torn by a crash)",
                        segment.size - segment.committed,
                        segment.path.name,
                    )
                segment.remove()
                self.sealed.remove(segment)

    def sync_active(self) -> None:
        if self.active is not None:
            self.active.sync()

    def close(self) -> None:
        """Release every segment; fully committed ones are removed, the rest stay for the next process."""
        for segment in self.segments():
            if segment.committed >= segment.size:
                segment.remove()
            else:
                with contextlib.suppress(OSError):
                    os.fsync(segment.fd)
                segment.close()
        self.sealed = []
        self.active = None


def _only_torn_tail(segment: Segment) -> bool:
    """Whether what is left after the checkpoint has no newline at all (so it can never become a line)."""
    remaining = segment.size - segment.committed
    if remaining <= 0 or remaining > _READ_CHUNK:
        return remaining <= 0
    return b"\n" not in os.pread(segment.fd, remaining, segment.committed)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
