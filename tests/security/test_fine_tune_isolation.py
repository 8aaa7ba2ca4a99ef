"""Fine-tuned models are granted by name: a key without an allow-list cannot list or use the platform account's
fine-tunes (trained for the operator or another tenant); a key whose allow-list names one can; a tenant's own
account's fine-tunes (its own upstream key) are its own (platform/proxy/model_access.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.gateway import Gateway
from tests.support.scripted import ScriptedUpstream, chat_completion, json_answer

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
THEIRS = "ft:gpt-4o-mini-2024-07-18:acme::b2Xk9"
LISTING = {
    "object": "list",
    "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "system"},
        {"id": THEIRS, "object": "model", "created": 2, "owned_by": "acme"},
        {"id": "ft:gpt-4.1:other-co:support:x1", "object": "model", "created": 3, "owned_by": "other-co"},
    ],
}


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as scripted:
        yield scripted


def _targets(upstream: ScriptedUpstream) -> list[str]:
    return [request.target for request in upstream.requests]


def test_the_platform_accounts_fine_tunes_are_neither_listed_nor_served_without_a_grant(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=upstream.base_url)
    client = gateway.client(gateway.new_key("tenant-b")["key"])  # no allow-list: every plain model

    upstream.push(json_answer(200, LISTING))
    assert [m.id for m in client.models.list().data] == ["gpt-4o-mini"]
    calls: list[Callable[[], object]] = [
        lambda: client.chat.completions.create(model=THEIRS, messages=MESSAGES),
        lambda: client.responses.create(model=THEIRS, input="hi"),
        lambda: client.embeddings.create(model="ft:text-embedding-3-small:acme::z", input="x"),
        lambda: client.models.retrieve(THEIRS),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "model_not_found"
    assert _targets(upstream) == ["/v1/models"]  # only the listing reached the upstream

    # A batch line naming it is refused when the batch is created, before anything is sent.
    batch_file = orjson.dumps(
        {
            "custom_id": "1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": THEIRS, "messages": MESSAGES},
        }
    )
    upstream.push(json_answer(200, {"id": "file-1", "object": "file", "bytes": 10, "created_at": 1,
                                    "filename": "b.jsonl", "purpose": "batch", "status": "processed"}))  # fmt: skip
    uploaded = client.files.create(file=("b.jsonl", batch_file + b"\n"), purpose="batch")
    upstream.push(json_answer(200, batch_file + b"\n"))  # its content, as the gateway reads it to check each line
    with pytest.raises(openai.APIStatusError) as refused:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert refused.value.status_code in (400, 404) and "model_not_found" in str(refused.value.body)
    assert not any(target.startswith("/v1/batches") for target in _targets(upstream))

    # The plain model is served as ever.
    upstream.push(json_answer(200, chat_completion("ok")))
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content == "ok"


def test_a_key_whose_allow_list_names_a_fine_tune_lists_and_uses_it(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=upstream.base_url)
    granted = gateway.new_key("tenant-a", allowed_models=["gpt-4o-mini", THEIRS])
    client = gateway.client(granted["key"])
    upstream.push(json_answer(200, LISTING))
    assert sorted(m.id for m in client.models.list().data) == sorted(["gpt-4o-mini", THEIRS])
    upstream.push(json_answer(200, chat_completion("tuned", model=THEIRS)))
    assert client.chat.completions.create(model=THEIRS, messages=MESSAGES).choices[0].message.content == "tuned"
    with pytest.raises(openai.NotFoundError):  # the other fine-tune is not named
        client.chat.completions.create(model="ft:gpt-4.1:other-co:support:x1", messages=MESSAGES)


def test_a_tenants_own_accounts_fine_tunes_are_its_own(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    with ScriptedUpstream() as own:
        gateway = gateway_factory(
            database_url=sqlite_url,
            upstream_base_url=upstream.base_url,
            tenant_upstream_allowed_networks="127.0.0.0/8",
            tenant_upstream_allow_http=True,
        )
        byok = gateway.new_key("byok")
        put = gateway.admin(
            "PUT",
            f"/admin/tenants/{byok['tenant_id']}/upstream-keys/default",
            json={"api_key": "sk-own-key", "base_url": own.base_url},
        )
        assert put.status_code == 200, put.text
        client = gateway.client(byok["key"])
        own.push(json_answer(200, LISTING))
        assert [m.id for m in client.models.list().data] == [m["id"] for m in LISTING["data"]]  # type: ignore[index]
        own.push(json_answer(200, chat_completion("mine", model=THEIRS)))
        assert client.chat.completions.create(model=THEIRS, messages=MESSAGES).choices[0].message.content == "mine"
        assert _targets(own) == ["/v1/models", "/v1/chat/completions"]
    assert _targets(upstream) == []  # the platform's account saw none of it


def test_a_tenant_with_its_own_key_for_the_platforms_endpoint_lists_and_uses_its_accounts_fine_tunes(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    """Its own key, no base URL of its own: the same endpoint, but the tenant's account answers."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=upstream.base_url)
    byok = gateway.new_key("key-only")
    put = gateway.admin(
        "PUT", f"/admin/tenants/{byok['tenant_id']}/upstream-keys/default", json={"api_key": "sk-tenant-account"}
    )
    assert put.status_code == 200, put.text
    client = gateway.client(byok["key"])
    upstream.push(json_answer(200, LISTING))
    assert len(client.models.list().data) == 3
    upstream.push(json_answer(200, chat_completion("mine", model=THEIRS)))
    assert client.chat.completions.create(model=THEIRS, messages=MESSAGES).choices[0].message.content == "mine"
    assert [r.headers["authorization"] for r in upstream.requests] == ["Bearer sk-tenant-account"] * 2


def test_no_generated_fine_tune_name_reaches_the_platform_without_a_grant(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=upstream.base_url)
    client = gateway.client(gateway.new_key("tenant-b")["key"], max_retries=0)  # no allow-list

    @settings(max_examples=40, deadline=None)
    @given(
        suffix=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters='"\\'), max_size=40),
        route=st.sampled_from(["chat", "responses", "embeddings", "retrieve"]),
    )
    def attempt(suffix: str, route: str) -> None:
        model = "ft:" + suffix
        call: dict[str, Callable[[], object]] = {
            "chat": lambda: client.chat.completions.create(model=model, messages=MESSAGES),
            "responses": lambda: client.responses.create(model=model, input="hi"),
            "embeddings": lambda: client.embeddings.create(model=model, input="x"),
            "retrieve": lambda: client.models.retrieve(model),
        }
        with pytest.raises((openai.NotFoundError, openai.BadRequestError)):
            call[route]()

    attempt()
    assert upstream.requests == []  # none of them reached the platform's account


# Ways a name can say ``ft:`` to an upstream that folds case, width or invisible characters, or decodes once more
# (model_access.py): what the gateway must read as a fine-tune even though it is not exactly ``ft:``.
_F = ["f", "F", "\uff46", "\uff26"]  # and their fullwidth forms
_T = ["t", "T", "\uff54", "\uff34"]
_COLON = [":", "\uff1a", "\ufe55", "%3A", "%3a", "%253A"]  # fullwidth, small form, percent-encoded (twice)
_INVISIBLE = [" ", "\u00a0", "\u200b", "\ufeff", "\u2060", "\u3000", "\u2003", "\u180e", "\u00ad", "\t"]


@st.composite
def fine_tune_spellings(draw: st.DrawFn) -> str:
    def pad() -> str:
        return "".join(draw(st.lists(st.sampled_from(_INVISIBLE), max_size=2)))

    name = pad() + draw(st.sampled_from(_F)) + pad() + draw(st.sampled_from(_T)) + pad()
    name += draw(st.sampled_from(_COLON)) + draw(st.sampled_from(["gpt-4o-mini-2024-07-18:acme::b2Xk9", "x"])) + pad()
    legacy = "curie:" + draw(st.sampled_from(_F)) + draw(st.sampled_from(_T)) + "-acme-2022-02-03"
    return draw(st.sampled_from([name, legacy]))


def test_no_other_spelling_of_a_fine_tune_reaches_the_platform_without_a_grant(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=upstream.base_url)
    client = gateway.client(gateway.new_key("tenant-b")["key"], max_retries=0)  # no allow-list

    @settings(max_examples=60, deadline=None)
    @given(model=fine_tune_spellings(), route=st.sampled_from(["chat", "responses", "embeddings", "retrieve"]))
    def attempt(model: str, route: str) -> None:
        call: dict[str, Callable[[], object]] = {
            "chat": lambda: client.chat.completions.create(model=model, messages=MESSAGES),
            "responses": lambda: client.responses.create(model=model, input="hi"),
            "embeddings": lambda: client.embeddings.create(model=model, input="x"),
            "retrieve": lambda: client.models.retrieve(model),
        }
        with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as refused:
            call[route]()
        assert isinstance(refused.value.body, dict) and refused.value.body.get("type") == "invalid_request_error"

    attempt()
    assert upstream.requests == []  # none of them reached the platform's account

    # Names that only resemble one are not refused: ``soft:``, ``gift:`` and the plain models are served.
    for plain in ("gpt-4o-mini", "soft:gpt-4o-mini", "gift:x"):
        upstream.push(json_answer(200, chat_completion("ok", model=plain)))
        assert client.chat.completions.create(model=plain, messages=MESSAGES).choices[0].message.content == "ok"


def test_the_platform_lists_no_fine_tune_under_another_spelling(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=upstream.base_url)
    client = gateway.client(gateway.new_key("tenant-b")["key"])
    odd = [{"id": name, "object": "model", "created": 4, "owned_by": "acme"} for name in ("FT:a:b", "\uff46\uff54:c")]
    upstream.push(json_answer(200, {**LISTING, "data": [*LISTING["data"], *odd]}))  # type: ignore[list-item]
    assert [m.id for m in client.models.list().data] == ["gpt-4o-mini"]


def test_a_public_name_routed_to_a_fine_tune_is_a_fine_tune(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: ScriptedUpstream, tmp_path: Any
) -> None:
    """The routing table's names count too: ``support-bot`` (alias ``helpdesk``) deployed as a fine-tune is used
    only where an allow-list names it, not by every key without one."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
upstreams:
  - {{name: openai, base_url: "{upstream.base_url}", api_key: sk-platform, max_retries: 0}}
models:
  - name: gpt-4o-mini
    deployments: [{{upstream: openai}}]
  - name: support-bot
    aliases: [helpdesk]
    deployments: [{{upstream: openai, model: "{THEIRS}"}}]
default_upstream: openai
"""
    )
    gateway = gateway_factory(database_url=sqlite_url, config_file=config)
    other = gateway.client(gateway.new_key("tenant-b")["key"], max_retries=0)  # no allow-list
    assert [m.id for m in other.models.list().data] == ["gpt-4o-mini"]
    for name in ("support-bot", "helpdesk"):
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.create(model=name, messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            other.models.retrieve(name)
    assert upstream.requests == []

    owner = gateway.client(gateway.new_key("tenant-a", allowed_models=["support-bot"])["key"])
    assert [m.id for m in owner.models.list().data] == ["support-bot"]
    upstream.push(json_answer(200, chat_completion("tuned", model=THEIRS)))
    assert owner.chat.completions.create(model="helpdesk", messages=MESSAGES).choices[0].message.content == "tuned"
    assert [(r.target, orjson.loads(r.body)["model"]) for r in upstream.requests] == [("/v1/chat/completions", THEIRS)]
