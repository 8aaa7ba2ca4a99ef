"""The stateless routes of issue 23 through the gateway with the official SDK: image edits and variations, input
token counts, compaction, and a Responses request that names a stored prompt instead of a model.

Real Postgres and Redis; the dev upstream answers as OpenAI does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from decimal import Decimal

import httpx
import openai
import pytest

from tenantgate.devupstream.images import tiny_png
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

PNG = tiny_png("source")


@pytest.fixture
def gateway(
    gateway_factory: Callable[..., Gateway], postgres_url: str, redis_url: str, redis_prefix: str, dev_upstream: str
) -> Gateway:
    return gateway_factory(
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        upstream_base_url=dev_upstream,
        metering_flush_interval_seconds=0.2,
        platform_prompts="pmpt_dev_haiku",  # the dev upstream's stored prompt, granted to every tenant
    )


def _events(gateway: Gateway, key_id: str) -> list[dict[str, object]]:
    flush(gateway)
    return [e for e in all_events(gateway) if e["api_key_id"] == key_id]


def test_image_edits_and_variations_are_served_metered_and_priced_per_image(gateway: Gateway) -> None:
    key = gateway.new_key("painter")
    client = gateway.client(key["key"])

    edited = client.images.edit(
        model="dall-e-2", image=("cat.png", PNG), prompt="a hat", n=2, size="256x256", response_format="b64_json"
    )
    assert len(edited.data) == 2
    assert base64.b64decode(edited.data[0].b64_json or "").startswith(b"\x89PNG")
    # No model named: OpenAI's default for variations, dall-e-2, is what the gateway checks, sends and meters.
    varied = client.images.create_variation(image=("cat.png", PNG))
    assert varied.data[0].url
    tokens = client.images.edit(model="gpt-image-1", image=("cat.png", PNG), prompt="a hat", quality="low")
    assert tokens.usage is not None and tokens.usage.input_tokens_details.image_tokens > 0

    events = {(e["endpoint"], e["model"]): e for e in _events(gateway, key["id"])}
    edit = events[("/v1/images/edits", "dall-e-2")]
    assert (edit["category"], edit["quantity"], edit["quantity_unit"]) == ("images", 2, "images")
    assert Decimal(str(edit["cost_usd"])) == Decimal("0.032")  # 2 x 256x256 at 0.016
    variation = events[("/v1/images/variations", "dall-e-2")]
    assert variation["quantity"] == 1 and Decimal(str(variation["cost_usd"])) == Decimal("0.020")
    by_tokens = events[("/v1/images/edits", "gpt-image-1")]
    assert by_tokens["image_tokens"] == tokens.usage.input_tokens_details.image_tokens
    assert by_tokens["usage_source"] == "upstream" and by_tokens["unpriced"] is None


def test_image_uploads_keep_to_the_keys_models(gateway: Gateway) -> None:
    key = gateway.new_key("painter", allowed_models=["dall-e-2"])
    client = gateway.client(key["key"])
    with pytest.raises(openai.NotFoundError):
        client.images.edit(model="gpt-image-1", image=("cat.png", PNG), prompt="a hat")
    # A second model field is refused before anything is sent (another parser may keep the last one).
    body = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ndall-e-2\r\n'
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-image-1\r\n'
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' + PNG + b"\r\n--b--\r\n"
    )
    response = httpx.post(
        gateway.base_url + "/images/edits",
        content=body,
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_multipart"
    assert response.json()["error"]["param"] == "model"
    assert [e for e in _events(gateway, key["id"]) if e["billable"]] == []


def test_a_json_image_edit_is_served_metered_and_names_only_the_callers_files(gateway: Gateway) -> None:
    """GPT image models take a JSON edit naming images by file id or URL; its file ids are checked like any other."""
    painter, other = gateway.new_key("painter"), gateway.new_key("other")
    own = gateway.client(painter["key"]).files.create(file=("cat.png", PNG), purpose="vision")
    theirs = gateway.client(other["key"]).files.create(file=("dog.png", PNG), purpose="vision")

    def edit(key: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(gateway.base_url + "/images/edits", json=body, headers={"Authorization": f"Bearer {key}"})

    body = {"model": "gpt-image-1", "prompt": "a hat", "quality": "low",
            "images": [{"file_id": own.id}, {"image_url": "https://example.com/cat.png"}]}  # fmt: skip
    answered = edit(painter["key"], body)
    assert answered.status_code == 200, answered.text
    assert answered.json()["usage"]["input_tokens_details"]["image_tokens"] > 0
    refused = edit(painter["key"], {**body, "images": [{"file_id": theirs.id}]})
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "images[0].file_id"
    unnamed = edit(painter["key"], {k: v for k, v in body.items() if k != "model"})
    assert unnamed.status_code == 400 and unnamed.json()["error"]["param"] == "model"
    [event] = [e for e in _events(gateway, painter["id"]) if e["endpoint"] == "/v1/images/edits" and e["billable"]]
    assert event["model"] == "gpt-image-1" and event["usage_source"] == "upstream" and event["unpriced"] is None
    assert event["image_tokens"] == answered.json()["usage"]["input_tokens_details"]["image_tokens"]


def test_input_token_counts_are_answered_and_never_billed(gateway: Gateway) -> None:
    key = gateway.new_key("counter")
    client = gateway.client(key["key"])
    counted = client.responses.input_tokens.count(model="gpt-4o-mini", input="How many tokens is this?")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    made = client.responses.create(model="gpt-4o-mini", input="How many tokens is this?")
    assert made.usage is not None and made.usage.input_tokens == counted.input_tokens

    events = _events(gateway, key["id"])
    count = next(e for e in events if e["endpoint"] == "/v1/responses/input_tokens")
    assert count["status"] == 200 and count["billable"] is False and Decimal(str(count["cost_usd"])) == 0
    assert [e["endpoint"] for e in events if e["billable"]] == ["/v1/responses"]


def test_compaction_is_metered_and_its_items_are_the_tenants(gateway: Gateway) -> None:
    owner = gateway.new_key("owner")
    client = gateway.client(owner["key"])
    compacted = client.responses.compact(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": "Remember the number 7."},
            {"role": "assistant", "content": "I will remember 7."},
        ],
    )
    assert compacted.object == "response.compaction" and compacted.output[-1].type == "compaction"
    summary = compacted.output[-1].model_dump(exclude_none=True)
    # The compaction item goes back as input, by id, and is the owner's.
    follow = client.responses.create(model="gpt-4o-mini", input=[summary, {"role": "user", "content": "Which?"}])
    assert follow.status == "completed"
    # Another tenant naming it gets the 404 of an id that never existed.
    other = gateway.client(gateway.new_key("other")["key"])
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-4o-mini", input=[summary])
    with pytest.raises(openai.NotFoundError):
        other.responses.input_tokens.count(model="gpt-4o-mini", input=[summary])

    events = _events(gateway, owner["id"])
    compact = next(e for e in events if e["endpoint"] == "/v1/responses/compact")
    assert compact["billable"] is True and compact["category"] == "completions"
    assert compact["input_tokens"] == compacted.usage.input_tokens
    assert compact["output_tokens"] == compacted.usage.output_tokens and compact["cost_usd"] is not None


def test_a_stored_prompt_without_a_model_is_metered_as_the_model_that_answered(gateway: Gateway) -> None:
    key = gateway.new_key("prompted")
    client = gateway.client(key["key"])
    answer = client.responses.create(prompt={"id": "pmpt_dev_haiku"}, input="Write about tea.")
    assert answer.model == "gpt-4o-mini"
    counted = client.responses.input_tokens.count(input="Write about tea.")
    assert counted.input_tokens > 0

    billed = [e for e in _events(gateway, key["id"]) if e["billable"]]
    assert [(e["model"], e["response_model"]) for e in billed] == [("gpt-4o-mini", "gpt-4o-mini")]
    assert billed[0]["cost_usd"] is not None and billed[0]["unpriced"] is None

    # A key limited to some models must name one: the prompt's model is known only after the work is done.
    limited = gateway.client(gateway.new_key("limited", allowed_models=["gpt-4o-mini"])["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        limited.responses.create(prompt={"id": "pmpt_dev_haiku"}, input="Write about tea.")
    assert refused.value.code == "model_required"
    assert limited.responses.create(model="gpt-4o-mini", prompt={"id": "pmpt_dev_haiku"}, input="hi").model
