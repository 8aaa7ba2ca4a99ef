"""The end of a stream reaches the client only after the exchange is settled (metered)."""

from __future__ import annotations

from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Limits, Principal
from tenantgate.platform.context import RequestContext
from tenantgate.platform.proxy.sse import StreamScanner

PRINCIPAL = Principal("key_1", "tg-x", "k", "ten_1", "t", True, None, Limits(), Limits(), None)


def _scanner(operation: str = "chat") -> StreamScanner:
    exchange = Exchange(ctx=RequestContext("req_1", PRINCIPAL), operation=operation, path="/v1/chat/completions")
    return StreamScanner(exchange, strip_usage=False)


def test_done_marker_is_held_until_released() -> None:
    scanner = _scanner()
    chunk = b'data: {"id":"c","choices":[{"delta":{"content":"hi"}}]}\n\n'
    out = scanner.feed(chunk + b"data: [DONE]\n\n")
    assert out == chunk
    assert scanner.flush() == b""
    assert scanner.release() == b"data: [DONE]\n\n"
    assert scanner.release() == b""


def test_done_without_space_and_split_across_reads_is_held_too() -> None:
    scanner = _scanner()
    assert scanner.feed(b"data:[DO") == b""
    assert scanner.feed(b"NE]\n\n") == b""
    assert scanner.release() == b"data:[DONE]\n\n"


def test_anything_after_a_held_marker_sends_it_along_in_order() -> None:
    scanner = _scanner()
    assert scanner.feed(b"data: [DONE]\n\n") == b""
    assert scanner.feed(b": keep-alive\n\n") == b"data: [DONE]\n\n: keep-alive\n\n"
    assert scanner.release() == b""


def test_responses_terminal_event_is_held_and_carries_usage() -> None:
    scanner = _scanner("responses")
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n'
    terminal = (
        b"event: response.completed\n"
        b'data: {"type":"response.completed","response":{"id":"r","model":"m","object":"response",'
        b'"status":"completed","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    )
    assert scanner.feed(delta + terminal) == delta
    assert scanner.exchange.usage is not None and scanner.exchange.usage.input_tokens == 3
    assert scanner.release() == terminal
