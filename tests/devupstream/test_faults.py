"""Fault injection by request headers, as the SDK (and a gateway in front) experiences it."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.devupstream.conftest import KEY

MESSAGES = [{"role": "user", "content": "fault please"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


def _sdk(upstream: str, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 10)
    return openai.OpenAI(base_url=upstream + "/v1", api_key=KEY, **kwargs)


def _key() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (403, openai.PermissionDeniedError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (409, openai.ConflictError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (502, openai.InternalServerError, "cf_bad_gateway"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_fail_status_reaches_the_sdk_as_its_exception(
    client: openai.OpenAI, status: int, error_class: type[openai.APIStatusError], error_type: str
) -> None:
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-dev-fail": str(status)}
        )
    error = caught.value
    assert error.status_code == status
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.type == error_type and error.message


def test_fail_times_scripts_500_then_200_for_a_retrying_client(upstream: str) -> None:
    key = _key()
    headers = {"x-dev-fail": "500", "x-dev-fail-times": "2", "x-dev-fail-key": key, "x-dev-retry-after-ms": "1"}
    with _sdk(upstream, max_retries=2) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
        )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-dev-attempt"] == "3"
    assert httpx.get(f"{upstream}/dev/attempts/{key}").json() == {"key": key, "attempts": 3}
    with _sdk(upstream) as client:
        # The counter has passed: every later request with that key succeeds.
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers).id


def test_fail_times_without_a_key_counts_requests_with_the_same_fault_headers(upstream: str) -> None:
    headers = {**AUTH, "x-dev-fail": "503", "x-dev-fail-times": "1", "x-dev-retry-after": "0.5"}
    # Never reached (an answer has far fewer events); makes these fault headers unique to this test run.
    headers["x-dev-garbage"] = str(100_000 + uuid.uuid4().int % 100_000)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    first = httpx.post(upstream + "/v1/chat/completions", headers=headers, json=body)
    second = httpx.post(upstream + "/v1/chat/completions", headers=headers, json=body)
    assert (first.status_code, second.status_code) == (503, 200)
    assert first.headers["retry-after"] == "0.5"
    assert (first.headers["x-dev-attempt"], second.headers["x-dev-attempt"]) == ("1", "2")


def test_retry_headers_on_the_failure(upstream: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    headers = {**AUTH, "x-dev-fail": "429", "x-dev-retry-after-ms": "1500", "x-dev-should-retry": "false"}
    response = httpx.post(upstream + "/v1/chat/completions", headers=headers, json=body)
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "1500" and response.headers["retry-after"] == "2"
    assert response.headers["x-should-retry"] == "false"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    key = _key()
    with _sdk(upstream, max_retries=3) as client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={**headers, "x-dev-fail-key": key}
        )
    # x-should-retry: false stops the SDK after one attempt.
    assert httpx.get(f"{upstream}/dev/attempts/{key}").json()["attempts"] == 1


def test_first_byte_delay(upstream: str) -> None:
    with _sdk(upstream, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-dev-first-byte-delay-ms": "3000"}
        )
    started = time.monotonic()
    with _sdk(upstream) as client:
        client.embeddings.create(
            model="text-embedding-3-small", input="x", extra_headers={"x-dev-first-byte-delay-ms": "200"}
        )
    assert time.monotonic() - started >= 0.2


def test_stall_mid_stream_leaves_the_client_waiting(upstream: str) -> None:
    received = []
    with _sdk(upstream, timeout=0.5) as client, pytest.raises(openai.APITimeoutError):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-dev-stall-after-events": "3"}
        )
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3


def test_stall_before_a_json_body(upstream: str) -> None:
    with _sdk(upstream, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
        client.moderations.create(input="x", extra_headers={"x-dev-stall-after-events": "0"})


def test_truncate_mid_stream_closes_the_connection(upstream: str) -> None:
    received = []
    with (
        _sdk(upstream) as client,
        pytest.raises(openai.APIConnectionError),
        client.responses.stream(
            model="gpt-4o-mini", input="x", extra_headers={"x-dev-truncate-after-events": "4"}
        ) as stream,
    ):
        for event in stream:
            received.append(event.type)
    assert received == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    with _sdk(upstream) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-dev-truncate-after-events": "0"}
        )


def test_truncate_speech_audio(upstream: str) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "a sentence long enough for many chunks of audio"}
    received = 0
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            upstream + "/v1/audio/speech",
            headers={**AUTH, "x-dev-truncate-after-events": "2"},
            json=body,
        ) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received == 2 * 4096


def test_garbage_in_a_stream_and_in_a_json_body(client: openai.OpenAI) -> None:
    received = []
    with pytest.raises(json.JSONDecodeError):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-dev-garbage": "1"}
        )
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 1
    with pytest.raises(json.JSONDecodeError):
        client.embeddings.create(model="text-embedding-3-small", input="x", extra_headers={"x-dev-garbage": "0"})


def test_error_event_mid_stream(client: openai.OpenAI) -> None:
    received = []
    with pytest.raises(openai.APIError) as caught:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-dev-error-after-events": "2"}
        )
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2 and "server had an error" in caught.value.message
    events = list(
        client.responses.create(
            model="gpt-4o-mini", input="x", stream=True, extra_headers={"x-dev-error-after-events": "3"}
        )
    )
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "error",
    ]
    assert events[-1].type == "error" and events[-1].code == "server_error" and events[-1].sequence_number == 3


def test_fail_only_applies_to_the_named_upstream(client: openai.OpenAI) -> None:
    # This dev upstream is named "alpha".
    elsewhere = {"x-dev-fail": "500", "x-dev-fail-only": "beta"}
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=elsewhere).id
    here = {"x-dev-fail": "500", "x-dev-fail-only": "beta, alpha"}
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=here)


async def test_faults_on_every_endpoint_family(async_client: openai.AsyncOpenAI) -> None:
    fail = {"x-dev-fail": "500"}
    with pytest.raises(openai.InternalServerError):
        await async_client.responses.create(model="gpt-4o-mini", input="x", extra_headers=fail)
    with pytest.raises(openai.InternalServerError):
        await async_client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"x"), extra_headers=fail)
    with pytest.raises(openai.InternalServerError):
        await async_client.images.generate(model="gpt-image-1", prompt="x", extra_headers=fail)
    with pytest.raises(openai.InternalServerError):
        await async_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", extra_headers=fail)


@pytest.mark.parametrize(
    ("name", "value"), [("x-dev-fail", "200"), ("x-dev-fail", "boom"), ("x-dev-stall-after-events", "-1")]
)
def test_unusable_fault_headers_are_refused(client: openai.OpenAI, name: str, value: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={name: value})
    assert name in caught.value.message


def test_error_event_in_a_transcription_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as caught:
        list(
            client.audio.transcriptions.create(
                model="gpt-4o-transcribe",
                file=("a.mp3", b"x" * 100),
                stream=True,
                extra_headers={"x-dev-error-after-events": "1"},
            )
        )
    assert "server had an error" in caught.value.message


@pytest.mark.parametrize(
    ("seconds", "written"), [(0.012, "12ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"), (3723, "1h2m3s")]
)
def test_rate_limit_reset_durations_are_written_like_openai(seconds: float, written: str) -> None:
    from tenantgate.devupstream.faults import duration

    assert duration(seconds) == written


def test_rate_limit_headers_count_down_within_a_minute() -> None:
    from tenantgate.devupstream.faults import RateWindow

    window = RateWindow()
    first = dict(window.take(1000))
    second = dict(window.take(1000))
    assert int(first[b"x-ratelimit-remaining-requests"]) == 29_999
    assert int(second[b"x-ratelimit-remaining-tokens"]) == 150_000_000 - 2000
    assert first[b"x-ratelimit-limit-tokens"] == b"150000000"
    assert second[b"x-ratelimit-reset-requests"].endswith(b"ms")
