"""The most a request may spend that its body does not cap: held against a monthly token quota or budget until it
ends (limits/hook.py).

Published maximums of OpenAI's models; names match exactly or as a dated snapshot (``gpt-4o-2024-08-06``), never by
an arbitrary prefix. Any other model holds ``TENANTGATE_DEFAULT_MAX_OUTPUT_TOKENS``. Images, speech and
transcription are bounded apart (``image_output_tokens``, ``speech_output_tokens``, ``audio_seconds``), from what
the request says (size and quality, the text to speak, the upload's size); docs/limits.md states the bounds.
"""

from __future__ import annotations

import re

MAX_OUTPUT_TOKENS = {
    "gpt-5": 128_000, "gpt-5-mini": 128_000, "gpt-5-nano": 128_000, "gpt-5-pro": 272_000, "gpt-5-chat-latest": 16_384,
    "gpt-4.1": 32_768, "gpt-4.1-mini": 32_768, "gpt-4.1-nano": 32_768,
    "gpt-4o": 16_384, "gpt-4o-mini": 16_384, "chatgpt-4o-latest": 16_384,
    "gpt-4o-audio-preview": 16_384, "gpt-4o-mini-audio-preview": 16_384,
    "gpt-4-turbo": 4_096, "gpt-4": 8_192, "gpt-3.5-turbo": 4_096, "gpt-4.5-preview": 16_384,
    "o1": 100_000, "o1-pro": 100_000, "o1-mini": 65_536,
    "o3": 100_000, "o3-pro": 100_000, "o3-mini": 100_000, "o4-mini": 100_000,
    "gpt-4o-transcribe": 2_000, "gpt-4o-mini-transcribe": 2_000, "gpt-4o-transcribe-diarize": 2_000,
}  # fmt: skip
_DATED = re.compile(r"^(?P<name>.+)-\d{4}-\d{2}-\d{2}$")


# Image output tokens of the gpt-image models per picture, by quality and size (OpenAI's published table, the same
# for gpt-image-1 and gpt-image-1-mini). A streamed generation adds 100 for each partial image it asks for.
IMAGE_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
IMAGE_TOKEN_MODELS = frozenset({"gpt-image-1", "gpt-image-1-mini"})
PARTIAL_IMAGE_TOKENS = 100
# Speech sold by tokens (text in, audio out). OpenAI's estimate for gpt-4o-mini-tts ($0.015 a minute at $12 per 1M
# audio tokens) is ~21 audio tokens a second, ~1.4 per character at ordinary speed (~15 characters a second); the
# bound allows 5 per character (speech 3.5 times slower, as instructions may ask) plus 100 (~5 s of silence).
SPEECH_TOKEN_MODELS = frozenset({"gpt-4o-mini-tts"})
SPEECH_TOKENS_PER_CHARACTER = 5
SPEECH_EXTRA_TOKENS = 100
# Transcription and translation: the upload's size bounds its audio. No accepted format carries speech in less
# than 8 kbit/s (MP3's lowest rate; voice Opus and AAC run above it), so an upload holds at most a second per
# 1,000 bytes. Models sold by tokens count ~17 audio tokens a second (OpenAI's $0.006 a minute at $6 per 1M audio
# input tokens for gpt-4o-transcribe): 20 are held.
AUDIO_BYTES_PER_SECOND = 1_000
TRANSCRIBE_TOKEN_MODELS = frozenset({"gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"})
AUDIO_TOKENS_PER_SECOND = 20


def _known(model: str, names: dict[str, int] | frozenset[str]) -> str | None:
    """``model``, or the model it is a dated snapshot of, if ``names`` has it."""
    if model in names:
        return model
    dated = _DATED.match(model)
    return dated.group("name") if dated is not None and dated.group("name") in names else None


def max_output_tokens(model: str, default: int) -> int:
    known = _known(model, MAX_OUTPUT_TOKENS)
    return default if known is None else MAX_OUTPUT_TOKENS[known]


def image_output_tokens(model: str, quality: object, size: object, partial_images: int = 0) -> int | None:
    """The most image output tokens one picture of a gpt-image model may cost; None for models priced otherwise
    (DALL-E, by the picture). A quality or size not given, ``auto`` or unknown counts as the largest."""
    if _known(model, IMAGE_TOKEN_MODELS) is None:
        return None
    qualities = [IMAGE_OUTPUT_TOKENS[quality]] if isinstance(quality, str) and quality in IMAGE_OUTPUT_TOKENS else []
    by_size = qualities or list(IMAGE_OUTPUT_TOKENS.values())
    most = max(tokens.get(size, 0) if isinstance(size, str) else 0 for tokens in by_size)
    if most == 0:
        most = max(max(tokens.values()) for tokens in by_size)
    return most + PARTIAL_IMAGE_TOKENS * max(0, partial_images)


def speech_output_tokens(model: str, characters: int) -> int | None:
    """The most audio tokens speaking ``characters`` characters may cost; None for speech priced by the character."""
    if _known(model, SPEECH_TOKEN_MODELS) is None:
        return None
    return SPEECH_TOKENS_PER_CHARACTER * characters + SPEECH_EXTRA_TOKENS


def audio_seconds(upload_bytes: int) -> int:
    """The most seconds of audio an upload of ``upload_bytes`` bytes may hold."""
    return -(-max(0, upload_bytes) // AUDIO_BYTES_PER_SECOND)


def transcription_audio_tokens(model: str, seconds: int) -> int | None:
    """The most audio input tokens ``seconds`` of audio may cost; None for transcription priced by the second."""
    if _known(model, TRANSCRIBE_TOKEN_MODELS) is None:
        return None
    return AUDIO_TOKENS_PER_SECOND * seconds
