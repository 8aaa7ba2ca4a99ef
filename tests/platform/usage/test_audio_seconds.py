"""Audio billed by the second: transcriptions and translations record the seconds the upstream reported."""

from __future__ import annotations

import io
import time
import wave

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush, get


def _wav(seconds: float) -> bytes:
    """Silent 16 kHz mono 16-bit audio of the given length."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\0\0" * int(16_000 * seconds))
    return buffer.getvalue()


def test_transcription_and_translation_seconds_reach_the_usage_api(gateway: Gateway) -> None:
    key = gateway.new_key()
    client = gateway.client(key["key"])
    started = int(time.time()) - 60
    # whisper-1 json: usage {"type": "duration", "seconds": 3}; verbose_json translation: "duration": 2.5.
    client.audio.transcriptions.create(model="whisper-1", file=("a.wav", _wav(3.0)), response_format="json")
    client.audio.translations.create(model="whisper-1", file=("b.wav", _wav(2.5)), response_format="verbose_json")
    # gpt-4o-transcribe reports tokens, not seconds: no seconds recorded for it.
    client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("c.wav", _wav(4.0)))
    flush(gateway)

    events = [e for e in all_events(gateway) if e["api_key_id"] == key["id"]]
    by_model_and_path = {(e["model"], e["endpoint"]): e for e in events}
    assert by_model_and_path[("whisper-1", "/v1/audio/transcriptions")]["quantity"] == 3
    assert by_model_and_path[("whisper-1", "/v1/audio/translations")]["quantity"] == 3  # 2.5 s, rounded up
    tokens = by_model_and_path[("gpt-4o-transcribe", "/v1/audio/transcriptions")]
    assert tokens["quantity"] == 0 and tokens["input_tokens"] > 0

    page = get(
        gateway, "/v1/organization/usage/audio_transcriptions", key["key"], start_time=started, bucket_width="1d"
    ).json()
    results = [r for bucket in page["data"] for r in bucket["results"]]
    assert sum(r["seconds"] for r in results) == 6
    assert sum(r["num_model_requests"] for r in results) == 3
