"""The OpenAI endpoints the gateway serves, and what each needs from the proxy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Endpoint:
    operation: str
    """OpenTelemetry ``gen_ai.operation.name`` (or the closest OpenAI API name)."""
    body: Literal["json", "multipart"]
    default_model: str | None = None
    usage_option: bool = False
    """Streams support ``stream_options.include_usage``."""


POST_ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint("chat", "json", usage_option=True),
    "/v1/completions": Endpoint("text_completion", "json", usage_option=True),
    "/v1/embeddings": Endpoint("embeddings", "json"),
    "/v1/responses": Endpoint("responses", "json"),
    "/v1/moderations": Endpoint("moderations", "json", default_model="omni-moderation-latest"),
    "/v1/images/generations": Endpoint("image_generation", "json", default_model="dall-e-2"),
    "/v1/audio/speech": Endpoint("speech", "json"),
    "/v1/audio/transcriptions": Endpoint("transcription", "multipart"),
    "/v1/audio/translations": Endpoint("translation", "multipart"),
}
