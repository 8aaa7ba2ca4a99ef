"""Images, speech and transcription hold a worst case against the month's budget and quota like chat does: gpt-image
models their output image tokens, gpt-4o-mini-tts the audio its text may become, transcription the audio its upload
may hold. A request whose worst case does not fit is refused before it reaches the upstream."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import pytest

from tenantgate.tenants.limits.outputs import (
    audio_seconds,
    image_output_tokens,
    speech_output_tokens,
    transcription_audio_tokens,
)
from tests.platform.limits.conftest import me, tenant_with_key
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush


def _refused(call: Any) -> str:
    with pytest.raises(openai.RateLimitError) as refused:
        call()
    assert refused.value.code == "insufficient_quota"
    return str(refused.value.message)


def test_the_bounds() -> None:
    assert image_output_tokens("gpt-image-1", "low", "1024x1024") == 272
    assert image_output_tokens("gpt-image-1-2025-04-23", "medium", "1536x1024") == 1568
    assert image_output_tokens("gpt-image-1", None, None) == 6240  # high, portrait: the largest
    assert image_output_tokens("gpt-image-1-mini", "auto", "1024x1024") == 4160  # any quality: high
    assert image_output_tokens("gpt-image-1", "low", "auto") == 408
    assert image_output_tokens("gpt-image-1", "high", "1024x1024", partial_images=2) == 4360
    assert image_output_tokens("dall-e-3", "hd", "1024x1024") is None  # priced by the picture
    assert speech_output_tokens("gpt-4o-mini-tts", 1000) == 5100 and speech_output_tokens("tts-1", 1000) is None
    assert audio_seconds(1) == 1 and audio_seconds(1_000) == 1 and audio_seconds(25_000_001) == 25_001
    assert transcription_audio_tokens("gpt-4o-transcribe", 60) == 1200
    assert transcription_audio_tokens("whisper-1", 60) is None


def test_gpt_image_holds_its_output_image_tokens(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_budget_usd": "0.2"})
    images = limited.client(created["key"], max_retries=0).images
    # Unspecified quality and size hold the largest picture: 6,240 tokens at $40 per 1M ($0.25) > $0.2.
    message = _refused(lambda: images.generate(model="gpt-image-1", prompt="a gateway"))
    assert "Requested up to $0.2496" in message
    _refused(lambda: images.generate(model="gpt-image-1", prompt="a gateway", quality="medium", n=5))
    images.generate(model="gpt-image-1", prompt="a gateway", quality="medium", size="1024x1024", n=2)  # $0.0845


def test_gpt_image_holds_against_the_token_quota(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_token_quota": 5000})
    images = limited.client(created["key"], max_retries=0).images
    _refused(lambda: images.generate(model="gpt-image-1", prompt="a gateway", quality="high"))  # 6,240 > 5,000
    images.generate(model="gpt-image-1", prompt="a gateway", quality="low")
    used = me(limited, created["key"])["limits"]["tenant"]["monthly_tokens"]
    assert used["used"] + used["reserved"] > 272  # what it used (or still holds), not nothing


def test_speech_by_tokens_holds_the_audio_its_text_may_become(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_budget_usd": "0.05"})
    speech = limited.client(created["key"], max_retries=0).audio.speech
    # 1,000 characters hold 5,100 audio tokens at $12 per 1M: $0.061 > $0.05.
    _refused(lambda: speech.create(model="gpt-4o-mini-tts", voice="alloy", input="x" * 1000).read())
    speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there", stream_format="sse").read()


def test_whisper_holds_the_seconds_its_upload_may_hold(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_budget_usd": "0.05"})
    transcriptions = limited.client(created["key"], max_retries=0).audio.transcriptions
    # 1 MB may hold 1,000 s (8 kbit/s): $0.10 at $0.006 a minute > $0.05.
    message = _refused(lambda: transcriptions.create(model="whisper-1", file=("a.mp3", b"\xff" * 1_000_000)))
    assert "Requested up to $0.1" in message
    transcriptions.create(model="whisper-1", file=("a.mp3", b"\xff" * 20_000))  # 20 s at most: $0.002


def test_transcription_by_tokens_holds_audio_and_output_tokens(limited: Gateway) -> None:
    created = tenant_with_key(limited, {"monthly_token_quota": 2500})
    transcriptions = limited.client(created["key"], max_retries=0).audio.transcriptions
    # 200 kB: up to 200 s, 4,000 audio tokens, and 2,000 output tokens > 2,500.
    _refused(lambda: transcriptions.create(model="gpt-4o-mini-transcribe", file=("a.mp3", b"\xff" * 200_000)))
    # 20 kB: 400 audio tokens and 2,000 output tokens fit.
    transcriptions.create(model="gpt-4o-mini-transcribe", file=("a.mp3", b"\xff" * 20_000))


def test_concurrent_images_across_two_processes_never_overspend(
    gateway_factory: Callable[..., Gateway],
    postgres_url: str,
    slow_dev_upstream: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    settings = dict(
        database_url=postgres_url,
        upstream_base_url=slow_dev_upstream,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        limits_redis_timeout_ms=5000,
    )
    first, second = gateway_factory(**settings), gateway_factory(**settings)
    tenant = first.create_tenant("media-concurrent", monthly_budget_usd="0.2")
    key = first.create_key(tenant["id"])["key"]

    def one(index: int) -> bool:
        client = (first if index % 2 else second).client(key, max_retries=0)
        try:
            client.images.generate(model="gpt-image-1", prompt="a gateway", quality="medium", size="1024x1024")
        except openai.RateLimitError as refused:
            assert refused.code == "insufficient_quota"
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        admitted = sum(pool.map(one, range(30)))
    flush(first)
    flush(second)
    events = [e for e in all_events(first, tenant_id=tenant["id"]) if e["billable"]]
    spent = sum((Decimal(str(e["cost_usd"])) for e in events), Decimal(0))
    # Each picture costs $0.04224 (1,056 tokens at $40 per 1M) and its prompt: four fit in $0.2, never more.
    assert len(events) == admitted and 1 <= admitted <= 4, admitted
    assert spent <= Decimal("0.2"), spent


def test_an_upload_of_unknown_length_holds_what_the_largest_body_may_hold(limited: Gateway) -> None:
    """Sent without a Content-Length (chunked) and too large to be read before it is forwarded, an upload may be as
    large as the gateway accepts (32 MiB: 33,555 s, $3.36 at whisper-1's price)."""
    created = tenant_with_key(limited, {"monthly_budget_usd": "1"})
    boundary = "tenantgate-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--{boundary}\r\n'
        'Content-Disposition: form-data; name="file"; filename="a.mp3"\r\nContent-Type: audio/mpeg\r\n\r\n'
    ).encode()
    parts = [head, *[b"\xff" * 100_000] * 15, f"\r\n--{boundary}--\r\n".encode()]  # 1.5 MB: streamed on
    headers = {
        "Authorization": f"Bearer {created['key']}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    url = limited.base_url + "/audio/transcriptions"
    chunked = limited.http.post(url, headers=headers, content=iter(parts))
    assert chunked.status_code == 429 and chunked.json()["error"]["code"] == "insufficient_quota"
    assert limited.http.post(url, headers=headers, content=b"".join(parts)).status_code == 200  # 1,500 s: $0.15
