"""Admission reads the request as the upstream will: every output cap, every answer asked for, typed fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.gateway import Gateway

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)


def _chat(gateway: Gateway, key: str, **body: Any) -> Any:
    return gateway.http.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES, **body},
    )


@pytest.mark.parametrize(
    "body",
    [
        {"max_completion_tokens": 1, "max_tokens": 1_000_000},  # the larger cap counts, whichever field it is in
        {"max_tokens": 1, "max_completion_tokens": 1_000_000},
        {"n": 5, "max_tokens": 200},  # five answers of up to 200 tokens each
    ],
)
def test_the_estimate_counts_the_largest_cap_and_every_answer(gateway: Gateway, body: dict[str, Any]) -> None:
    key = gateway.new_key("tpm", tpm=500)["key"]
    refused = _chat(gateway, key, **body)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert _chat(gateway, key, max_tokens=100, n=2).status_code == 200  # 2 x 100 + the prompt fits


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [("stream", "true", "boolean"), ("store", 1, "boolean"), ("n", "2", "integer"), ("max_tokens", 1.5, "integer")],
)
def test_fields_admission_reads_must_have_openais_types(gateway: Gateway, field: str, value: object, kind: str) -> None:
    key = gateway.new_key("types")["key"]
    refused = _chat(gateway, key, **{field: value})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == field and error["code"] == "invalid_type" and f"of type '{kind}'" in error["message"]


def test_background_is_a_boolean_on_responses_and_a_string_on_images(gateway: Gateway) -> None:
    """``background`` means background mode on /v1/responses (the gateway reads it to bill the response once), and
    the image's background on /v1/images/* (``"transparent"``), where it is the upstream's to judge."""
    key = gateway.new_key("background")["key"]
    headers = {"Authorization": f"Bearer {key}"}
    image = gateway.http.post(
        gateway.base_url + "/images/generations",
        headers=headers,
        json={"model": "gpt-image-1", "prompt": "a cat", "background": "transparent"},
    )
    assert image.status_code == 200, image.text
    refused = gateway.http.post(
        gateway.base_url + "/responses",
        headers=headers,
        json={"model": "gpt-4o-mini", "input": "hi", "background": "transparent"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "background"


def _complete(gateway: Gateway, key: str, **body: Any) -> Any:
    return gateway.http.post(
        gateway.base_url + "/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-3.5-turbo-instruct", **body},
    )


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ["a", "b", "c", "d", "e"], "max_tokens": 200},  # five prompts, an answer of up to 200 each
        {"prompt": [[1, 2], [3, 4], [5, 6]], "max_tokens": 100, "n": 2},  # three token prompts, two answers each
        {"prompt": [[7] * 300, [8] * 300], "max_tokens": 1},  # 600 prompt tokens, given as token lists
    ],
)
def test_a_list_of_prompts_counts_an_answer_per_prompt(gateway: Gateway, body: dict[str, Any]) -> None:
    key = gateway.new_key("prompts", tpm=500)["key"]
    refused = _complete(gateway, key, **body)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    # One list of token ids is one prompt: 3 tokens and two answers of up to 200 fit.
    assert _complete(gateway, key, prompt=[1, 2, 3], max_tokens=200, n=2).status_code == 200


def test_a_list_of_prompts_holds_the_models_most_output_for_each(gateway: Gateway) -> None:
    """Without a cap, the month's quota holds the model's maximum output once per prompt."""
    tenant = gateway.create_tenant("prompts-quota", monthly_token_quota=20_000)
    key = gateway.create_key(tenant["id"])["key"]
    assert _complete(gateway, key, prompt="a").status_code == 200  # up to 16,384 tokens held: fits
    refused = _complete(gateway, key, prompt=["a", "b"])  # twice that does not
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
