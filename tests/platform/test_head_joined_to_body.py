"""A response's head goes out with its first body chunk in one write, and nothing is lost, reordered or delayed
past the event loop's next turn."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate.platform.http_protocol import _JOIN_BYTES, _HeadJoinedToBody

HEAD = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


async def test_a_head_and_its_body_are_one_write() -> None:
    sink = Recorder()
    joined = _HeadJoinedToBody(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(HEAD)
    joined.write(b"{}")
    assert sink.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)
    assert sink.writes == [HEAD + b"{}"]  # the pending flush was cancelled, not sent twice
    assert joined.get_extra_info("peername") == ("127.0.0.1", 1)


async def test_a_head_alone_goes_out_on_the_next_turn_of_the_loop() -> None:
    # A stream whose first chunk is not ready: its client sees the head without waiting for the chunk.
    sink = Recorder()
    joined = _HeadJoinedToBody(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(HEAD)
    assert sink.writes == []
    await asyncio.sleep(0)
    assert sink.writes == [HEAD]
    joined.write(b"data: 1\n\n")
    assert sink.writes == [HEAD, b"data: 1\n\n"]


async def test_close_sends_a_held_head_first() -> None:
    sink = Recorder()
    joined = _HeadJoinedToBody(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(HEAD)
    joined.close()
    assert sink.writes == [HEAD] and sink.closed
    await asyncio.sleep(0)
    assert sink.writes == [HEAD]


async def test_a_large_body_is_not_copied_onto_its_head() -> None:
    sink = Recorder()
    joined = _HeadJoinedToBody(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
    body = b"x" * (_JOIN_BYTES + 1)
    joined.write(HEAD)
    joined.write(body)
    assert sink.writes == [HEAD, body]


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=200)
            # A body too large to join: one repeated byte (64 KiB of random bytes trips hypothesis's size check).
            | st.builds(
                lambda size, byte: bytes([byte]) * size, st.integers(_JOIN_BYTES, _JOIN_BYTES + 10), st.integers(0, 255)
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    close=st.booleans(),
)
def test_whatever_is_written_arrives_whole_in_order_with_only_the_head_joined(
    steps: list[tuple[bytes, bool]], close: bool
) -> None:
    async def run() -> Recorder:
        sink = Recorder()
        joined = _HeadJoinedToBody(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
        for index, (data, turn) in enumerate(steps):
            joined.write(data)
            if turn:
                await asyncio.sleep(0)  # a turn of the loop: everything so far has gone out
                assert b"".join(sink.writes) == b"".join(d for d, _ in steps[: index + 1])
        if close:
            joined.close()
        await asyncio.sleep(0)
        return sink

    sink = asyncio.run(run())
    assert b"".join(sink.writes) == b"".join(data for data, _ in steps)
    joined_head = len(steps) >= 2 and not steps[0][1] and len(steps[1][0]) <= _JOIN_BYTES
    assert len(sink.writes) == len(steps) - joined_head
