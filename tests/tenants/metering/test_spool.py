"""The write-ahead spool: ordered appends, checkpoints, adoption of dead processes' segments, a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tenantgate.tenants.metering import spool as spool_module
from tenantgate.tenants.metering.spool import Spool


def _lines(n: int, tag: str = "e") -> list[bytes]:
    return [f'{{"n":"{tag}{i}"}}\n'.encode() for i in range(n)]


def test_reads_in_order_from_the_checkpoint(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    for line in _lines(5):
        spool.append(line)
    segment = spool.active
    assert segment is not None
    lines, end = segment.read(3, segment.size)
    assert lines == [line.rstrip(b"\n") for line in _lines(5)[:3]]
    segment.commit(end)
    rest, end = segment.read(100, segment.size)
    assert rest == [line.rstrip(b"\n") for line in _lines(5)[3:]]
    assert end == segment.size
    spool.close()  # uncommitted lines remain: the segment stays for the next process
    assert len(list(tmp_path.glob("seg-*.spool"))) == 1


@pytest.mark.parametrize("chunk", [7, 100, 1 << 20], ids=["lines-span-chunks", "batch-ends-in-a-chunk", "one-chunk"])
def test_batches_end_on_whole_lines_across_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Batches are read in chunks of bytes: a line cut by a chunk boundary, a batch ending inside a chunk and a line
    still being appended (no newline yet) must all come out as whole lines, each read once, in order."""
    monkeypatch.setattr(spool_module, "_READ_CHUNK", chunk)
    spool = Spool(tmp_path)
    spool.open()
    written = _lines(12)
    for line in written:
        spool.append(line)
    segment = spool.active
    assert segment is not None
    os.write(segment.fd, b'{"n":"torn')  # a concurrent append half done
    read: list[bytes] = []
    position = segment.committed
    while True:
        block, count, end = segment.read_block(5, None, position)
        if not count:
            break
        assert count <= 5 and block.count(b"\n") == count and block.endswith(b"\n")
        read.extend(bytes(block).splitlines(keepends=True))
        position = end
    assert read == written
    assert position == segment.size  # the torn tail is left for the next read
    spool.close()


def test_a_fully_committed_segment_is_removed_on_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(b'{"n":1}\n')
    segment = spool.active
    assert segment is not None
    segment.commit(segment.read(10, segment.size)[1])
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_segments_of_a_live_process_are_not_adopted(tmp_path: Path) -> None:
    owner = Spool(tmp_path)
    owner.open()
    owner.append(b'{"n":1}\n')
    other = Spool(tmp_path)
    other.open()
    assert other.adopt_orphans() == 0
    owner.close()
    assert other.adopt_orphans() == 1
    (adopted,) = other.sealed
    assert adopted.read(10, None)[0] == [b'{"n":1}']
    other.close()


def test_segment_of_a_sigkilled_process_is_adopted_with_everything_it_wrote(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from tenantgate.tenants.metering.spool import Spool\n"
        "spool = Spool(Path(sys.argv[1])); spool.open()\n"
        "for i in range(1000): spool.append(b'{\"n\":%d}\\n' % i)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert result.returncode == -signal.SIGKILL
    survivor = Spool(tmp_path)
    survivor.open()
    assert survivor.adopt_orphans() == 1
    lines, _ = survivor.sealed[0].read(5000, None)
    assert lines == [b'{"n":%d}' % i for i in range(1000)]
    survivor.close()


def test_a_torn_last_line_is_never_read_and_its_segment_is_cleaned_up(tmp_path: Path) -> None:
    dead = Spool(tmp_path)
    dead.open()
    dead.append(b'{"n":1}\n')
    segment = dead.active
    assert segment is not None
    os.write(segment.fd, b'{"n":2, "torn')  # a machine crash mid-write
    path = segment.path
    dead.close()
    heir = Spool(tmp_path)
    heir.open()
    heir.adopt_orphans()
    (adopted,) = heir.sealed
    lines, end = adopted.read(10, None)
    assert lines == [b'{"n":1}']
    adopted.commit(end)
    heir.drop_finished()
    assert not path.exists() and heir.sealed == []
    heir.close()


def test_a_full_disk_holds_events_in_memory_and_writes_them_later(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    segment = spool.active
    assert segment is not None
    spool.append_or_hold(b'{"n":0}\n')
    saved = os.dup(segment.fd)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, segment.fd)  # every write now fails with ENOSPC
    try:
        spool.append_or_hold(b'{"n":1}\n')
        spool.append_or_hold(b'{"n":2}\n')
        assert list(spool.held) == [b'{"n":1}\n', b'{"n":2}\n']
    finally:
        os.dup2(saved, segment.fd)
        os.close(saved)
        os.close(full)
    spool.append_or_hold(b'{"n":3}\n')  # the disk has room again: held lines go first, in order
    assert not spool.held
    assert segment.read(10, segment.size)[0] == [b'{"n":0}', b'{"n":1}', b'{"n":2}', b'{"n":3}']
    spool.close()
