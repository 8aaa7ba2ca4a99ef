"""What a batch output line hands to its owner, read from whatever an upstream (or a tenant's own endpoint) put in
it: generated lines never fail the settlement, and only a successful line's own ids are taken (a chat completion's
only when its input line asked ``store: true``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenantgate.platform.background.settlement import _MAX_STORED_PER_LINE, _stored_objects

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_BODY = st.fixed_dictionaries(
    {},
    optional={
        "object": st.sampled_from(["response", "chat.completion", "list"]) | _JSON,
        "id": st.text(max_size=20).map(lambda s: "resp_" + s) | st.text(max_size=20) | _JSON,
        "output": st.lists(
            st.fixed_dictionaries({}, optional={"id": st.text(max_size=20) | _JSON, "type": st.text(max_size=8)})
            | _JSON,
            max_size=6,
        )
        | _JSON,
    },
)


@given(
    endpoint=st.sampled_from(["/v1/responses", "/v1/chat/completions", "/v1/embeddings"]),
    status=st.integers(min_value=-1, max_value=600),
    body=_BODY,
    stores_chat=st.booleans(),
)
def test_only_a_successful_lines_own_ids_are_taken(
    endpoint: str, status: int, body: dict[str, Any], stores_chat: bool
) -> None:
    stored = _stored_objects(endpoint, status, body, stores_chat)
    if endpoint == "/v1/chat/completions":
        completion_id = body.get("id")
        ok = stores_chat and 0 < status < 400 and body.get("object") == "chat.completion"
        expected = (
            [(completion_id, "chat_completion")] if ok and isinstance(completion_id, str) and completion_id else []
        )
        assert stored == expected
        return
    if endpoint != "/v1/responses" or not 0 < status < 400 or body.get("object") != "response":
        assert stored == []
        return
    if not stored:
        assert not (isinstance(body.get("id"), str) and body["id"].startswith("resp_"))
        return
    assert stored[0] == (body["id"], "response")
    output = body.get("output")
    output = output if isinstance(output, list) else []
    items = [item["id"] for item in output if isinstance(item, dict) and isinstance(item.get("id"), str)]
    assert stored[1:] == [(item_id, "item") for item_id in items if item_id][: _MAX_STORED_PER_LINE - 1]
    assert all(isinstance(object_id, str) and object_id for object_id, _ in stored)
