"""Chat completions, legacy completions, embeddings and models through the official openai SDK."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.devupstream.conftest import KEY

MESSAGES = [{"role": "user", "content": "Say hello to the dev upstream"}]


def test_chat_completion_with_openai_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.choices[0].message.content == "This is the tenantgate dev upstream answering: " + str(
        MESSAGES[0]["content"]
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    headers = raw.headers
    assert raw.request_id is not None and raw.request_id.startswith("req_") and len(raw.request_id) == 36
    assert int(headers["openai-processing-ms"]) >= 0
    assert headers["x-ratelimit-limit-requests"] == "30000"
    assert int(headers["x-ratelimit-remaining-requests"]) < 30000
    assert int(headers["x-ratelimit-remaining-tokens"]) <= 150_000_000 - completion.usage.prompt_tokens
    assert headers["x-ratelimit-reset-requests"].endswith(("ms", "s"))
    assert headers["x-dev-upstream"] == "alpha"


def test_reasoning_model_counts_reasoning_tokens(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="o4-mini", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    reasoning = completion.usage.completion_tokens_details.reasoning_tokens
    assert reasoning is not None and reasoning > 0
    assert completion.usage.completion_tokens > reasoning


def test_chat_stream_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert text.startswith("This is the tenantgate dev upstream answering")
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_chat_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "This is the"


def test_missing_messages_is_an_openai_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=None)  # type: ignore[arg-type]
    assert caught.value.code == "missing_required_parameter" and caught.value.param == "messages"


def test_legacy_completion(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["one", "two"], max_tokens=4)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.text == "This is the tenantgate" and c.finish_reason == "length" for c in completion.choices)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 8)


def test_legacy_completion_defaults_to_16_tokens_and_echoes(client: openai.OpenAI) -> None:
    long_prompt = "a b c d e f g h i j k l"
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=long_prompt, echo=True)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].text.startswith(long_prompt + "This is")
    assert completion.usage is not None and completion.usage.completion_tokens == 16


def test_legacy_completion_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="hello there",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "This is the tenantgate dev upstream answering: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9


def test_legacy_completion_accepts_token_prompts(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="davinci-002", prompt=[1, 2, 3, 4, 5])
    assert completion.usage is not None and completion.usage.prompt_tokens == 5


def test_embeddings_float_and_base64_agree(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 8
    # The SDK asks for base64 by default and decodes it; both must give the same vector.
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2
    raw = httpx.post(
        str(client.base_url.join("embeddings")),
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "text-embedding-3-small", "input": "a", "encoding_format": "base64", "dimensions": 64},
    ).json()
    vector = struct.unpack("<64f", base64.b64decode(raw["data"][0]["embedding"]))
    assert len(vector) == 64


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"gpt-4o-mini", "whisper-1", "gpt-image-1", "tts-1"} <= set(ids)
    assert client.models.retrieve("gpt-4o-mini").owned_by == "system"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


async def test_async_chat_and_completion_streams(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 5
    legacy = await async_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True)
    texts = [c.choices[0].text async for c in legacy]
    assert "".join(texts).endswith("answering: hi")
