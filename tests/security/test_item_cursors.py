"""Cursors into a conversation's items and a response's input items, probed as tenant B holding tenant A's item ids:
ids the gateway has seen (listed, added, a turn's output) and ids it never saw (a Responses turn's input, a
conversation's first items, appended upstream; B learnt them elsewhere). Paging B's own list from any of them must
say nothing of A's: the answer is the empty page a made-up id gets, byte for byte, and the id never reaches the
upstream (which could place it in the shared account's order: B's entries after it say when A made it). B's own
cursors page B's lists as before.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate.tenants.objects import Owner
from tests.security.test_conversation_isolation import World
from tests.security.test_conversation_isolation import world as world  # the two tenants, A with one of everything

_MESSAGES: Any = [
    {"role": "user", "content": "first"},
    {"role": "user", "content": "second"},
    {"role": "user", "content": "third"},
]


@pytest.fixture(scope="module")
def a_unseen(world: World) -> dict[str, str]:
    """Item ids of A's that no answer of the gateway showed: read from the upstream's own store, as B would have to
    learn them (the gateway never tells B, and has not recorded them as anyone's)."""
    a, inner = world.a, world.upstream.inner
    conversation = a.conversations.create(items=_MESSAGES[:1]).id  # its items are not in the answer
    response = a.responses.create(model="gpt-4o-mini", input=_MESSAGES[:2], conversation=conversation)
    stored = inner.responses.store.get(response.id)
    assert stored is not None
    unseen = {
        "conversation item": inner.conversations.get(conversation).items[0]["id"],
        "turn input item": stored.input_items[0]["id"],
    }
    for item_id in unseen.values():
        assert _owner(world, item_id) is None
    return unseen


@pytest.fixture(scope="module")
def b_own(world: World) -> Iterator[dict[str, Any]]:
    """B's response with three input items and B's conversation with three items, neither listed yet."""
    b = world.b
    response = b.responses.create(model="gpt-4o-mini", input=_MESSAGES)
    conversation = b.conversations.create(items=_MESSAGES).id
    yield {
        "input_items": f"/responses/{response.id}/input_items",
        "items": f"/conversations/{conversation}/items",
        "response": response.id,
        "conversation": conversation,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["conversation item", "turn input item", "item", "output_item"]),
    listed=st.sampled_from(["input_items", "items"]),
    cursor=st.sampled_from(["after", "before"]),
    order=st.sampled_from(["", "&order=asc", "&order=desc"]),
    limit=st.sampled_from(["", "&limit=1", "&limit=100"]),
)
def test_a_cursor_naming_another_tenants_item_gets_what_a_made_up_id_gets_and_never_reaches_the_upstream(
    world: World, a_unseen: dict[str, str], b_own: dict[str, Any], which: str, listed: str, cursor: str,
    order: str, limit: str,
) -> None:  # fmt: skip
    named = a_unseen.get(which) or world.a_ids[which]
    if cursor == "before" and listed == "items":
        cursor = "after"  # the only cursor OpenAI defines on a conversation's items
    made_up = "msg_" + secrets.token_hex(25)
    before = len(world.upstream.queries)
    answers = [world.b_request("GET", f"{b_own[listed]}?{cursor}={value}{order}{limit}") for value in (named, made_up)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    assert answers[0].content == answers[1].content
    reached = world.upstream.queries[before:]
    assert not any(named in q or made_up in q for q in reached), f"a cursor reached the upstream: {reached}"
    # Nothing of the probe became B's: A's item is still nobody's, or A's.
    owner = _owner(world, named)
    assert owner is None or owner.tenant_id != _tenant_of(world, "attacker")


def _owner(world: World, object_id: str) -> Owner | None:
    """Who the gateway records as the owner (run on the gateway's own loop, where its pools live)."""
    return asyncio.run_coroutine_threadsafe(
        world.gateway.runtime.ownership.owner(object_id), world.gateway.loop
    ).result()


def _tenant_of(world: World, prefix: str) -> str:
    tenants = world.gateway.admin("GET", "/admin/tenants").json()["data"]
    return str(next(t["id"] for t in tenants if t["name"].startswith(prefix)))


@pytest.mark.parametrize("listed", ["input_items", "items"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_the_callers_own_cursors_page_through_its_list_one_entry_at_a_time(
    world: World, b_own: dict[str, Any], listed: str, order: str
) -> None:
    """Every page's ``last_id`` is an item the gateway recorded as B's when the page showed it, so it pages on."""
    whole = world.b_request("GET", f"{b_own[listed]}?order={order}").json()
    assert len(whole["data"]) == 3
    seen: list[str] = []
    query = f"order={order}&limit=1"
    for _ in range(4):
        page = world.b_request("GET", f"{b_own[listed]}?{query}").json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        query = f"order={order}&limit=1&after={page['last_id']}"
    assert seen == [item["id"] for item in whole["data"]]
    # And through the SDK, which pages by itself.
    if listed == "items":
        paged = world.b.conversations.items.list(b_own["conversation"], order=order, limit=1)
    else:
        paged = world.b.responses.input_items.list(b_own["response"], order=order, limit=1)
    assert [item.id for item in paged] == seen  # type: ignore[union-attr]


def test_an_item_of_the_callers_own_conversation_not_yet_recorded_still_pages_on(world: World) -> None:
    """A cursor the gateway has no record of may still be the caller's: an item of its own conversation that another
    process listed (its record not yet written here), or one its conversation was created with. The upstream holding
    the conversation is asked whether the item is there; then the page after it is the upstream's, not empty."""
    b, inner = world.b, world.upstream.inner
    conversation = b.conversations.create(items=_MESSAGES).id  # the create's answer shows none of its items
    first = inner.conversations.get(conversation).items[0]["id"]
    assert _owner(world, first) is None
    whole = [item["id"] for item in inner.conversations.get(conversation).items]  # not listed through the gateway
    page = world.b_request("GET", f"/conversations/{conversation}/items?order=asc&after={first}").json()
    assert [item["id"] for item in page["data"]] == whole[1:]
    owner = _owner(world, first)
    assert owner is not None and owner.tenant_id == _tenant_of(world, "attacker")  # B's now, as if listed here


def test_an_input_item_of_the_callers_own_response_not_yet_recorded_still_pages_on(world: World) -> None:
    """The same for a response's input items: found among its input items at the upstream, the cursor is the
    caller's and the page after it is the upstream's."""
    b, inner = world.b, world.upstream.inner
    response = b.responses.create(model="gpt-4o-mini", input=_MESSAGES)  # its input items are not in the answer
    stored = inner.responses.store.get(response.id)
    assert stored is not None
    whole = [item["id"] for item in stored.input_items]
    assert len(whole) == 3 and _owner(world, whole[0]) is None
    page = world.b_request("GET", f"/responses/{response.id}/input_items?order=asc&after={whole[0]}").json()
    assert [item["id"] for item in page["data"]] == whole[1:]
    owner = _owner(world, whole[0])
    assert owner is not None and owner.tenant_id == _tenant_of(world, "attacker")


def test_a_stored_completions_messages_page_on_from_the_callers_own_cursors_never_from_another_tenants(
    world: World,
) -> None:
    """A stored chat completion's messages: B's own cursors page on (recorded when a page showed them, or found among
    its completion's messages upstream); A's message as B's cursor gets the empty page and is never sent as one."""
    b = world.b
    completion = b.chat.completions.create(model="gpt-4o-mini", messages=_MESSAGES, store=True).id
    ids = [f"{completion}-{index}" for index in range(3)]  # as the dev upstream names them
    assert _owner(world, ids[0]) is None
    page = world.b_request("GET", f"/chat/completions/{completion}/messages?order=asc&after={ids[0]}").json()
    assert [message["id"] for message in page["data"]] == ids[1:]
    assert [m.id for m in b.chat.completions.messages.list(completion, order="asc", limit=1)] == ids

    a_completion = world.a_ids["completion"]
    a_message = world.a.chat.completions.messages.list(a_completion).data[0].id
    unseen = f"{a_completion}-9"  # an id of A's form the gateway never recorded
    for cursor in (a_message, unseen):
        before = len(world.upstream.queries)
        answer = world.b_request("GET", f"/chat/completions/{completion}/messages?after={cursor}")
        assert answer.status_code == 200 and answer.json()["data"] == [], answer.text
        assert not any(cursor in query for query in world.upstream.queries[before:])
        owner = _owner(world, cursor)
        assert owner is None or owner.tenant_id != _tenant_of(world, "attacker")
