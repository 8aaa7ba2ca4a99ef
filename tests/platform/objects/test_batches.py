"""The Batch API through the gateway with the official SDK: input files checked line by line before a batch exists,
the tenant's batch queue, and what a batch holds against the month's quota and budget until it ends."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest

from tenantgate import tokens
from tenantgate.devupstream import DevUpstream
from tests.conftest import UPSTREAM_KEY
from tests.platform.objects.batching import (
    batch_cost,
    create,
    jsonl,
    line,
    output_usage,
    two_model_lines,
    upload_input,
    wait_ended,
    wait_until,
)
from tests.support.gateway import Gateway
from tests.support.server import ServedApp


def _upstream_batches(upstream: str) -> int:
    response = httpx.get(upstream + "/batches", headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
    return len(response.json()["data"])


def _month(gateway: Gateway, key: str) -> dict[str, Any]:
    response = gateway.http.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"})
    tenant: dict[str, Any] = response.json()["limits"]["tenant"]
    return {"tokens": tenant["monthly_tokens"], "budget": tenant["monthly_budget_usd"]}


def test_a_batch_runs_through_the_sdk(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    client = gateway.client(gateway.new_key("batches")["key"])
    input_id = upload_input(client, two_model_lines(4))
    batch = create(client, input_id, metadata={"project": "x"})
    assert batch.status == "validating" and batch.input_file_id == input_id
    assert [b.id for b in client.batches.list()] == [batch.id]
    ended = wait_ended(client, batch.id)
    assert ended.status == "completed" and ended.request_counts is not None
    assert ended.request_counts.completed == 4
    assert ended.output_file_id is not None
    assert sum(m["lines"] for m in output_usage(client, ended.output_file_id).values()) == 4
    # The output file is the tenant's: listed once the batch is settled (in the background, a moment later), with
    # the batch's latest state in the batch list.
    wait_until(
        lambda: ended.output_file_id in [f.id for f in client.files.list(purpose="batch_output")],
        what="the output file to be listed",
    )
    assert client.batches.list().data[0].status == "completed"


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"custom_id": "req-0", "method": "POST", "url": "/v1/chat/completions",
          "body": {"model": "gpt-4o-mini", "messages": []}}, "duplicate_custom_id"),
        (line("x", "gpt-4o-mini", "hi", url="/v1/embeddings"), "mismatched_url"),
        ({**line("x", "gpt-4o-mini", "hi"), "method": "GET"}, "invalid_method"),
        (line("x", "gpt-4.1", "hi"), "model_not_found"),
        ({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}},
         "missing_model"),
        ("not json", "invalid_json_line"),
    ],
)  # fmt: skip
def test_input_lines_are_checked_before_the_batch_exists(
    objects_gateway: Callable[..., Gateway], fast_upstream: str, bad: Any, code: str
) -> None:
    gateway = objects_gateway()
    tenant = gateway.create_tenant(f"lines-{code}")
    key = gateway.create_key(tenant["id"], allowed_models=["gpt-4o-mini", "gpt-4o"])["key"]
    client = gateway.client(key)
    good = [line(f"req-{i}", "gpt-4o-mini", f"hello {i}") for i in range(2)]
    if isinstance(bad, str):
        raw = jsonl(good) + bad.encode() + b"\n"
        input_id = client.files.create(file=("in.jsonl", io.BytesIO(raw)), purpose="batch").id
    else:
        input_id = upload_input(client, [*good, bad])
    before = _upstream_batches(fast_upstream)
    with pytest.raises(openai.BadRequestError) as refused:
        create(client, input_id)
    assert refused.value.code == code
    assert refused.value.body["message"].startswith("Line 3 of the input file:"), refused.value.message  # type: ignore[index]
    assert refused.value.param == "input_file_id"
    assert _upstream_batches(fast_upstream) == before
    assert client.batches.list().data == []


def test_a_batch_needs_a_batch_file(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    client = gateway.client(gateway.new_key("purpose")["key"])
    data = io.BytesIO(jsonl([line("a", "gpt-4o-mini", "x")]))
    other = client.files.create(file=("in.jsonl", data), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as refused:
        create(client, other.id)
    assert refused.value.param == "input_file_id"
    with pytest.raises(openai.BadRequestError) as endpoint:
        client.batches.create(input_file_id=other.id, endpoint="/v1/images/generations", completion_window="24h")
    assert endpoint.value.param == "endpoint"


def test_the_batch_queue_refuses_what_does_not_fit_until_batches_end(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    first_lines = [line(f"a{i}", "gpt-4o-mini", f"first batch line {i}") for i in range(3)]
    second_lines = [line(f"b{i}", "gpt-4o-mini", f"second batch line {i}") for i in range(3)]

    def prompt(lines: list[dict[str, Any]]) -> int:
        return sum(tokens.estimate_prompt_tokens(item["body"], "gpt-4o-mini") for item in lines)

    limit = prompt(first_lines) + prompt(second_lines) - 1
    tenant = gateway.create_tenant("queue", batch_queue_tokens=limit)
    client = gateway.client(gateway.create_key(tenant["id"])["key"])
    first = create(client, upload_input(client, first_lines), metadata={"dev_seconds": "2"})
    second_input = upload_input(client, second_lines)
    with pytest.raises(openai.RateLimitError) as full:
        create(client, second_input)
    assert full.value.code == "token_limit_exceeded"
    assert f"Limit: {limit} enqueued tokens" in full.value.message
    # A batch of another model has a queue of its own.
    create(client, upload_input(client, [line("c0", "gpt-4o", "other model")]))
    wait_ended(client, first.id)
    second = wait_until(lambda: _try_create(client, second_input), what="the queue to have room again")
    assert second.status == "validating"


def _try_create(client: openai.OpenAI, input_id: str) -> Any:
    try:
        return create(client, input_id)
    except openai.RateLimitError:
        return None


@pytest.mark.parametrize("ending", ["cancelled", "expired", "failed"])
def test_what_a_batch_holds_is_released_when_it_ends_without_output(
    objects_gateway: Callable[..., Gateway], ending: str
) -> None:
    gateway = objects_gateway()
    tenant = gateway.create_tenant(f"holds-{ending}", monthly_token_quota=50_000_000, monthly_budget_usd="100")
    key = gateway.create_key(tenant["id"])["key"]
    client = gateway.client(key)
    metadata = {"dev_seconds": "30"} if ending == "cancelled" else {"dev_outcome": ending}
    batch = create(client, upload_input(client, two_model_lines(4)), metadata=metadata)
    held = _month(gateway, key)
    assert held["tokens"]["reserved"] > 4 * 16_000  # each line holds its prompt and the most output it allows
    assert held["budget"]["reserved"] > 0
    assert held["tokens"]["used"] == 0
    if ending == "cancelled":
        assert client.batches.cancel(batch.id).status == "cancelling"
    assert wait_ended(client, batch.id).status == ending
    released = wait_until(
        lambda: (m := _month(gateway, key))["tokens"]["reserved"] == 0 and m, what="the holds to be released"
    )
    assert released["tokens"]["used"] == 0
    assert released["budget"] == {**released["budget"], "reserved": 0, "spent": 0}


def test_a_completed_batch_charges_exactly_what_its_lines_used(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    tenant = gateway.create_tenant("charged", monthly_token_quota=50_000_000, monthly_budget_usd="100")
    key = gateway.create_key(tenant["id"])["key"]
    client = gateway.client(key)
    batch = wait_ended(client, create(client, upload_input(client, two_model_lines(6))).id)
    assert batch.output_file_id is not None
    used = output_usage(client, batch.output_file_id)
    month = wait_until(
        lambda: (m := _month(gateway, key))["tokens"]["reserved"] == 0 and m, what="the batch to be settled"
    )
    assert month["tokens"]["used"] == sum(m["input"] + m["output"] for m in used.values())
    assert month["budget"]["spent"] == pytest.approx(float(batch_cost(used)), abs=2e-6)


def test_a_batch_lives_where_its_input_file_does(objects_gateway: Callable[..., Gateway]) -> None:
    """A file uploaded in the platform's account, then a BYOK endpoint set: the batch made from the file is created
    in the platform's account, and is found there afterwards (not looked for at the tenant's own endpoint)."""
    gateway = objects_gateway(tenant_upstream_allowed_networks="127.0.0.0/8", tenant_upstream_allow_http=True)
    key = gateway.new_key("moved")
    client = gateway.client(key["key"])
    input_id = upload_input(client, two_model_lines(2))
    with ServedApp(DevUpstream(api_key="sk-own"), lifespan="off") as own:
        put = gateway.admin(
            "PUT",
            f"/admin/tenants/{key['tenant_id']}/upstream-keys/default",
            json={"api_key": "sk-own", "base_url": own.url + "/v1"},
        )
        assert put.status_code == 200, put.text
        batch = create(client, input_id)
        assert wait_ended(client, batch.id).status == "completed"
        # New files now go to the tenant's own endpoint, and stay reachable there.
        own_file = upload_input(client, two_model_lines(1))
        assert client.files.retrieve(own_file).id == own_file
        assert sorted(f.id for f in client.files.list(purpose="batch")) == sorted([input_id, own_file])


def test_refusing_unpriced_models_refuses_batch_lines_without_a_batch_price(
    objects_gateway: Callable[..., Gateway],
) -> None:
    gateway = objects_gateway(unpriced_models="refuse")
    client = gateway.client(gateway.new_key("unpriced")["key"])
    for model in ("acme-llm", "gpt-realtime"):  # no price at all; a price but none for the Batch API
        input_id = upload_input(client, [line("ok", "gpt-4o-mini", "priced"), line("no", model, "not priced")])
        with pytest.raises(openai.BadRequestError) as refused:
            create(client, input_id)
        assert refused.value.code == "model_not_priced"
        assert refused.value.body["message"].startswith("Line 2 of the input file:")  # type: ignore[index]
    assert create(client, upload_input(client, [line("ok", "gpt-4o-mini", "priced")])).status == "validating"


def test_responses_a_batch_stored_are_its_owners_to_read_and_nobody_elses(
    objects_gateway: Callable[..., Gateway],
) -> None:
    """A Responses batch stores each line's response upstream (store defaults to true). Once the batch is settled
    they are the batch owner's as if asked directly: retrievable, their output items nameable; another tenant gets
    the 404 of an id that never existed."""
    gateway = objects_gateway()
    owner = gateway.client(gateway.new_key("batches")["key"])
    other = gateway.client(gateway.new_key("other")["key"])
    lines = [
        {
            "custom_id": f"r-{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "gpt-4o-mini", "input": f"hi {i}"},
        }
        for i in range(3)
    ]
    input_id = upload_input(owner, lines)
    batch = owner.batches.create(input_file_id=input_id, endpoint="/v1/responses", completion_window="24h")
    ended = wait_ended(owner, batch.id)
    assert ended.status == "completed" and ended.output_file_id is not None
    wait_until(
        lambda: ended.output_file_id in [f.id for f in owner.files.list(purpose="batch_output")],
        what="the batch to be settled",
    )
    output = [orjson.loads(row) for row in owner.files.content(ended.output_file_id).read().splitlines()]
    bodies = [row["response"]["body"] for row in output]
    assert len(bodies) == 3 and all(body["id"].startswith("resp_") for body in bodies)
    for body in bodies:
        assert owner.responses.retrieve(body["id"]).id == body["id"]
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(body["id"])
    follow_up = owner.responses.create(model="gpt-4o-mini", input="and then?", previous_response_id=bodies[0]["id"])
    assert follow_up.previous_response_id == bodies[0]["id"]
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-4o-mini", input="and then?", previous_response_id=bodies[0]["id"])


def test_chat_completions_a_batch_stored_are_its_owners_listed_and_nobody_elses(
    objects_gateway: Callable[..., Gateway],
) -> None:
    """Lines asking ``store: true`` store their chat completion upstream: once the batch is settled those (and only
    those) are listed among the creator's stored chat completions and retrievable; another tenant gets 404."""
    gateway = objects_gateway()
    owner = gateway.client(gateway.new_key("batches")["key"])
    other = gateway.client(gateway.new_key("other")["key"])
    lines = [line("kept-0", "gpt-4o-mini", "a", store=True), line("plain", "gpt-4o-mini", "b")]
    lines.append(line("kept-1", "gpt-4o-mini", "c", store=True))
    ended = wait_ended(owner, create(owner, upload_input(owner, lines)).id)
    assert ended.status == "completed" and ended.output_file_id is not None
    wait_until(
        lambda: ended.output_file_id in [f.id for f in owner.files.list(purpose="batch_output")],
        what="the batch to be settled",
    )
    output = {
        row["custom_id"]: row["response"]["body"]["id"]
        for row in map(orjson.loads, owner.files.content(ended.output_file_id).read().splitlines())
    }
    kept = {output["kept-0"], output["kept-1"]}
    assert {completion.id for completion in owner.chat.completions.list()} == kept
    for completion_id in kept:
        assert owner.chat.completions.retrieve(completion_id).id == completion_id
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.retrieve(completion_id)
    with pytest.raises(openai.NotFoundError):
        owner.chat.completions.retrieve(output["plain"])
    assert list(other.chat.completions.list()) == []
