"""Spans as ``ExportTraceServiceRequest`` wire bytes, without protobuf's message classes.

The SDK's OTLP encoder builds a tree of protobuf message objects per span and then serialises it; with every
request traced that was the largest single cost in the gateway process (py-spy: ~17% of its CPU for two spans per
request). Spans are a fixed, small schema, so ``encode_spans`` writes the ``ExportTraceServiceRequest`` wire bytes
directly (resource and instrumentation scope encoded once and reused). ``tests/observability/test_spanwire.py``
checks that the bytes parse to exactly the message the SDK's encoder produces, for every attribute type and span
shape the gateway emits. Spans with events or links (the gateway makes none) go through the SDK's encoder.

They are sent by ``otlphttp.OtlpHttpSender`` (wrapped as the SDK's exporter in observability/otlphttp.py).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

log = logging.getLogger("tenantgate.telemetry")

_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")


_SMALL = [bytes((i,)) for i in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64 on the wire: two's complement, ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, str):
        data = value.encode()
        return b"\x0a" + _varint(len(data)) + data
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if value is None:
        return b""
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"invalid attribute type {type(value).__name__}")


_KEYS: dict[str, bytes] = {}
"""Attribute keys, encoded as the KeyValue's first field (the gateway uses a small, fixed set)."""


def _encoded_key(key: str) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _field(1, key.encode())
        if len(_KEYS) < 4096:
            _KEYS[key] = encoded
    return encoded


def _key_value(key: str, value: Any) -> bytes:
    encoded_value = _any_value(value)
    return _encoded_key(key) + b"\x12" + _varint(len(encoded_value)) + encoded_value


_FIELDS: dict[tuple[int, str, str | int], bytes] = {}
"""Whole encoded attribute fields by (field number, key, value) for str and int values: most repeat from span to
span (method, route, model, provider, tenant, status...). Bounded: cleared when full."""
_FIELDS_MAX = 8192
_UNIQUE_KEYS = frozenset(
    {
        "tenantgate.request.id",
        "gen_ai.response.id",
        "tenantgate.ratelimit.remaining_requests",
        "tenantgate.ratelimit.remaining_tokens",
    }
)
"""Attributes whose value is new on (nearly) every span: never found again in the cache, each would only fill it
(about 300 B an entry, 2.4 MB when full) and empty it of the fields that do repeat."""


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    tag = _varint(number << 3 | 2)
    small = _SMALL
    cache = _FIELDS
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        # not bool: True == 1 must not find 1's encoding
        cacheable = (kind is str or kind is int) and key not in _UNIQUE_KEYS
        if cacheable:
            found = cache.get((number, key, value))
            if found is not None:
                parts.append(found)
                continue
        encoded_key = _encoded_key(key)
        # The common scalar cases inline; the rest via _any_value.
        if kind is str:
            data = value.encode()
            size = len(data)
            encoded = (b"\x0a" + small[size] + data) if size < 0x80 else (b"\x0a" + _varint(size) + data)
        elif kind is int and 0 <= value < 0x80:
            encoded = b"\x18" + small[value]
        else:
            try:
                encoded = _any_value(value)
            except TypeError as error:
                log.warning("span attribute %s not exported: %s", key, error)
                continue
        size = len(encoded)
        pair = encoded_key + (b"\x12" + small[size] if size < 0x80 else b"\x12" + _varint(size)) + encoded
        size = len(pair)
        field = tag + (small[size] if size < 0x80 else _varint(size)) + pair
        if cacheable:
            if len(cache) >= _FIELDS_MAX:
                cache.clear()
            cache[(number, key, value)] = field
        parts.append(field)
    return b"".join(parts)


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    out = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big"), b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    if context.trace_state:
        out.append(_field(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items()).encode()))
    parent = span.parent
    if parent is not None:
        out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    out.append(_field(5, span.name.encode()))
    out.append(b"\x30" + _varint(span.kind.value + 1))  # the API's INTERNAL=0 is OTLP's SPAN_KIND_INTERNAL=1
    out.append(b"\x39" + _FIXED64.pack(span.start_time or 0))
    out.append(b"\x41" + _FIXED64.pack(span.end_time or 0))
    out.append(_attributes(9, span.attributes))
    if span.dropped_attributes:
        out.append(b"\x50" + _varint(span.dropped_attributes))
    status = span.status
    if status is not None:
        encoded = b""
        if status.description:
            encoded += _field(2, status.description.encode())
        if status.status_code.value:
            encoded += b"\x18" + _varint(status.status_code.value)
        out.append(_field(15, encoded))
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    out.append(b"\x85\x01" + _FIXED32.pack(flags))
    return b"".join(out)


class _Envelopes:
    """Resource and scope encodings, computed once per (resource, scope) pair: they never change in a process."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def resource(self, resource: Any) -> bytes:
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            encoded = _field(1, _attributes(1, resource.attributes))
            if len(self._resources) > 64:
                self._resources.clear()
            cached = self._resources[id(resource)] = (resource, encoded)
        return cached[1]

    def scope(self, scope: Any) -> bytes:
        cached = self._scopes.get(id(scope))
        if cached is None or cached[0] is not scope:
            encoded = b""
            if scope is not None:
                inner = _field(1, scope.name.encode()) if scope.name else b""
                inner += _field(2, scope.version.encode()) if scope.version else b""
                inner += _attributes(3, scope.attributes)
                encoded = _field(1, inner)
                if scope.schema_url:
                    encoded += _field(3, scope.schema_url.encode())
            if len(self._scopes) > 64:
                self._scopes.clear()
            cached = self._scopes[id(scope)] = (scope, encoded)
        return cached[1]


_ENVELOPES = _Envelopes()


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` of ``spans``."""
    if any(span.events or span.links for span in spans):
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans

        return bytes(sdk_encode_spans(spans).SerializePartialToString())
    grouped: dict[tuple[int, int], tuple[Any, Any, list[bytes]]] = {}
    for span in spans:
        key = (id(span.resource), id(span.instrumentation_scope))
        group = grouped.get(key)
        if group is None:
            group = grouped[key] = (span.resource, span.instrumentation_scope, [])
        group[2].append(_field(2, _span(span)))
    by_resource: dict[int, tuple[Any, list[bytes]]] = {}
    for resource, scope, encoded_spans in grouped.values():
        scope_spans = _ENVELOPES.scope(scope) + b"".join(encoded_spans)
        by_resource.setdefault(id(resource), (resource, []))[1].append(_field(2, scope_spans))
    out = []
    for resource, scope_spans_list in by_resource.values():
        body = _ENVELOPES.resource(resource) + b"".join(scope_spans_list)
        if resource.schema_url:
            body += _field(3, resource.schema_url.encode())
        out.append(_field(1, body))
    return b"".join(out)
