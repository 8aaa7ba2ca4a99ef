"""The one rewrite of a stream's body the gateway makes for usage: what it reads is what the upstream gets."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tenantgate.platform.proxy.request_body import JsonBody


def _body(raw: bytes) -> JsonBody:
    payload = orjson.loads(raw)
    return JsonBody(raw, payload, payload["model"])


def test_a_body_asking_for_usage_once_goes_on_byte_for_byte() -> None:
    raw = b'{"model": "gpt-4o",  "stream": true, "stream_options": {"include_usage": true}, "messages": []}'
    body = _body(raw)
    assert body.ask_for_stream_usage() is False and body.raw == raw


@given(st.lists(st.booleans(), min_size=2, max_size=4), st.sampled_from([b"", b" ", b"\n  "]))
def test_include_usage_named_twice_reaches_the_upstream_once_with_the_value_the_gateway_read(
    values: list[bool], space: bytes
) -> None:
    """orjson keeps the last of a duplicated key; an upstream keeping the first must not see another value."""
    options = b",".join(b'"include_usage":' + space + (b"true" if v else b"false") for v in values)
    raw = b'{"model":"gpt-4o","stream":true,"stream_options":{' + options + b'},"messages":[]}'
    body = _body(raw)
    asked = body.ask_for_stream_usage()
    assert asked is (not values[-1])  # the gateway asked for usage itself where the client's last word was false

    def one_reading(pairs: list[tuple[str, object]]) -> dict[str, object]:
        assert len({k for k, _ in pairs}) == len(pairs), "a key named twice still goes upstream"
        return dict(pairs)

    forwarded = json.loads(body.raw, object_pairs_hook=one_reading)
    assert forwarded["stream_options"] == {"include_usage": True}
