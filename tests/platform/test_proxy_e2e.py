"""End-to-end: the official openai SDK against a served gateway, on SQLite and on Postgres."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.gateway import Gateway

MESSAGES = [{"role": "user", "content": "Say hello to the gateway"}]


def test_chat_completion_round_trip(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    raw = gateway.client(key).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert "Say hello to the gateway" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")
    # The upstream's own request id is kept, under a name that does not pose as ours.
    assert raw.headers["x-upstream-request-id"].startswith("req_")
    assert raw.headers["x-request-id"] != raw.headers["x-upstream-request-id"]


def test_streamed_chat_completion(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    stream = gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("This is the tenantgate dev upstream answering")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_arrives_incrementally(gateway_factory, database_url: str, slow_dev_upstream: str) -> None:
    gateway = gateway_factory(database_url=database_url, upstream_base_url=slow_dev_upstream)
    key = gateway.new_key()["key"]
    started = time.monotonic()
    stream = gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    arrivals = [time.monotonic() - started for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    # 50 ms per token upstream: the first token must reach the client long before the last one is generated.
    assert len(arrivals) >= 10
    assert arrivals[-1] - arrivals[0] > 0.3
    assert arrivals[0] < arrivals[-1] / 2


def test_request_id_from_caller_is_kept(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    raw = gateway.client(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": "my-trace-123"}
    )
    assert raw.headers["x-request-id"] == "my-trace-123"


def test_azure_style_api_key_header(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"api-key": key},
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
    )
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


@pytest.mark.parametrize("api_key", ["", "tg-not-a-real-key-at-all-0000000000000000000"])
def test_missing_or_unknown_key_is_401(gateway: Gateway, api_key: str) -> None:
    client = gateway.client(api_key or "placeholder")
    if not api_key:
        client = openai.OpenAI(
            base_url=gateway.base_url, api_key="unused", max_retries=0, default_headers={"Authorization": ""}
        )
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert raised.value.request_id and raised.value.request_id.startswith("req_")


def test_revoked_key_is_refused(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert gateway.admin("POST", f"/admin/keys/{created['id']}/revoke").json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_error_body_has_openai_shape(gateway: Gateway) -> None:
    response = httpx.post(gateway.base_url + "/chat/completions", json={"model": "gpt-4o-mini"})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert "x-request-id" in response.headers


def test_missing_model_is_400(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.client(key).chat.completions.create(model="", messages=MESSAGES)
    assert raised.value.param == "model"


def test_invalid_json_is_400(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    response = httpx.post(
        gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, content=b"{not json"
    )
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_unknown_v1_path_is_openai_404(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    response = httpx.post(gateway.base_url + "/no/such/thing", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/no/such/thing)"


def test_upstream_error_passes_through_with_status(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    with pytest.raises(openai.NotFoundError) as raised:
        gateway.client(key).models.retrieve("no-such-model")
    assert raised.value.code == "model_not_found"


def test_models_list(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    ids = [m.id for m in gateway.client(key).models.list()]
    assert "gpt-4o-mini" in ids


def test_models_list_of_a_key_with_an_allow_list_is_the_upstreams_own_filtered(gateway: Gateway) -> None:
    everything = {m.id: m for m in gateway.client(gateway.new_key()["key"]).models.list()}
    allowed = gateway.new_key(allowed_models=["gpt-4o-mini", "not-served-upstream"])["key"]
    listed = list(gateway.client(allowed).models.list())
    assert listed == [everything["gpt-4o-mini"]]  # the upstream's entry as it is (created, owned_by)
    assert listed[0].owned_by != "tenantgate"


def test_embeddings_through_sdk_default_base64(gateway: Gateway) -> None:
    # /v1/embeddings is proxied with the generic JSON forwarder as well.
    key = gateway.new_key()["key"]
    result = gateway.client(key).embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8


def test_upstream_unreachable_is_502(gateway_factory, database_url: str) -> None:
    gateway = gateway_factory(
        database_url=database_url, upstream_base_url="http://127.0.0.1:9/v1", upstream_connect_timeout_seconds=2
    )
    key = gateway.new_key()["key"]
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 502
    assert raised.value.code == "upstream_unavailable"
    assert raised.value.request_id and raised.value.request_id in raised.value.message


def test_tenant_key_is_not_forwarded_upstream(gateway: Gateway) -> None:
    # The test dev upstream only accepts the platform's upstream key: a 200 proves the swap.
    key = gateway.new_key()["key"]
    assert gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
