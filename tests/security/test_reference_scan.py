"""The scan of a JSON body for stored-object ids, with generated bodies: an id of a stored object is found wherever it
is nested and under whatever ``*_id`` / ``*_ids`` key, so a key the gateway does not know yet still fails closed."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate.platform.proxy.references import inspect_body

PREFIXES = {"file-": "file", "vs_": "vector_store", "resp_": "response", "conv_": "conversation",
            "cntr_": "container", "audio_": "audio", "batch_": "batch", "chatcmpl-": "chat_completion"}  # fmt: skip
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
id_keys = st.builds(lambda stem, plural: f"{stem}_id{'s' if plural else ''}", names, st.booleans())
object_ids = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(sorted(PREFIXES)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
)
filler = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


def _nest(value: Any, path: list[tuple[str, int | str]]) -> Any:
    for kind, at in reversed(path):
        value = [value] if kind == "list" else {str(at): value}
    return value


@settings(max_examples=300, deadline=None)
@given(
    key=id_keys,
    object_id=object_ids,
    path=st.lists(st.one_of(st.tuples(st.just("list"), st.just(0)), st.tuples(st.just("dict"), names)), max_size=4),
    siblings=st.dictionaries(names, filler, max_size=3),
)
def test_a_stored_objects_id_is_found_under_any_id_key_at_any_depth(
    key: str,
    object_id: str,
    path: list[tuple[str, int | str]],
    siblings: dict[str, Any],
) -> None:
    value = [object_id] if key.endswith("_ids") else object_id
    body = {"model": "gpt-4o-mini", **siblings, "tools": [_nest({key: value}, path)]}
    raw = orjson.dumps(body)
    found = inspect_body("/v1/chat/completions", raw, orjson.loads(raw))
    assert any(r.id == object_id for r in found), (body, found)
    kinds = {r.kind for r in found if r.id == object_id}
    expected = next(kind for prefix, kind in PREFIXES.items() if object_id.startswith(prefix))
    # A listed key may give a more precise kind (container_id: container); an unlisted one takes the prefix's.
    assert expected in kinds or key in {"file_id", "file_ids", "vector_store_ids", "container_id", "skill_id"}


@settings(max_examples=200, deadline=None)
@given(key=id_keys, value=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20))
def test_ids_of_no_stored_kind_under_unknown_keys_are_not_references(key: str, value: str) -> None:
    """``call_id``, a caller's own ``user_id``...: values without a stored object's prefix are the caller's business."""
    if any(value.startswith(prefix) for prefix in PREFIXES) or key in {"file_id", "file_ids", "vector_store_ids",
                                                                       "container_id", "skill_id"}:  # fmt: skip
        return
    body = {"model": "gpt-4o-mini", "messages": [{"role": "tool", key: value, "content": "x"}]}
    raw = orjson.dumps(body)
    assert inspect_body("/v1/chat/completions", raw, orjson.loads(raw)) == []


def test_a_batch_lines_custom_id_is_the_callers_label_whatever_it_looks_like() -> None:
    """``custom_id`` is never dereferenced upstream: "file-3-line-7" there is a label, not a file to check."""
    body = {"custom_id": "file-3-line-7", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    raw = orjson.dumps(body)
    assert inspect_body("/v1/chat/completions", raw, orjson.loads(raw)) == []
    # The same value under any other id key is a file reference, checked for ownership.
    other = {**body, "source_id": "file-3-line-7"}
    raw = orjson.dumps(other)
    assert [r.kind for r in inspect_body("/v1/chat/completions", raw, orjson.loads(raw))] == ["file"]
