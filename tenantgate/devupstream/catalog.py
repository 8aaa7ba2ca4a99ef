"""The model list, embeddings and moderations: small, non-generative answers."""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from typing import Any

from tenantgate.devupstream.wire import ApiError, Call, count_tokens, new_id, require, require_model

MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "o4-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "omni-moderation-latest",
    "gpt-image-1",
    "dall-e-3",
    "tts-1",
    "gpt-4o-mini-tts",
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
)
_CREATED = 1715367049


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "system"}


async def list_models(call: Call) -> None:
    await call.json(200, {"object": "list", "data": [_model(m) for m in MODELS]})


async def get_model(call: Call, model: str) -> None:
    if model not in MODELS:
        raise ApiError(
            404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
        )
    await call.json(200, _model(model))


async def embeddings(call: Call, payload: dict[str, Any]) -> None:
    model = require_model(payload)
    inputs = require(payload, "input")
    texts = [inputs] if isinstance(inputs, str) else [i if isinstance(i, str) else str(i) for i in inputs]
    if not texts:
        raise ApiError(400, "'$.input' is invalid. Please check the API reference.", param="input")
    # Eight dimensions unless asked for more: answers stay small and cheap when benchmarks stand it in for OpenAI.
    dims = payload.get("dimensions") or 8
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 3072:
        raise ApiError(400, "Invalid 'dimensions': expected an integer between 1 and 3072.", param="dimensions")
    data = []
    for index, text in enumerate(texts):
        digest = hashlib.sha256(text.encode()).digest()
        vector = ([(b - 128) / 128 for b in digest] * (dims // 32 + 1))[:dims]
        # The openai SDK asks for base64 (packed little-endian float32) unless told otherwise.
        embedding: object = vector
        if payload.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(count_tokens(t) for t in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    await call.json(200, {"object": "list", "data": data, "model": model, "usage": usage}, tokens)


CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
)
# A text flags a category when it contains the marker ``flag:<category>``, e.g. ``flag:violence``.
_MARKER_RE = re.compile(r"flag:([a-z/-]+)", re.IGNORECASE)


def _moderate(text: str, has_image: bool) -> dict[str, Any]:
    marked = {m.lower() for m in _MARKER_RE.findall(text)}
    digest = hashlib.sha256(text.encode()).digest()
    categories = {c: c in marked for c in CATEGORIES}
    scores = {c: 0.97 if categories[c] else round((digest[i] + 1) / 256 * 1e-3, 9) for i, c in enumerate(CATEGORIES)}
    applied = {c: ["text", "image"] if has_image and c in _IMAGE_CATEGORIES else ["text"] for c in CATEGORIES}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }


async def moderations(call: Call, payload: dict[str, Any]) -> None:
    model = payload.get("model") or "omni-moderation-latest"
    inputs = require(payload, "input")
    if isinstance(inputs, str):
        results = [_moderate(inputs, False)]
    elif isinstance(inputs, list) and all(isinstance(i, str) for i in inputs):
        results = [_moderate(text, False) for text in inputs]
    elif isinstance(inputs, list) and all(isinstance(i, dict) for i in inputs):
        # A multi-modal input (text and image parts) is judged as one.
        text = " ".join(str(part.get("text", "")) for part in inputs if part.get("type") == "text")
        results = [_moderate(text, any(part.get("type") == "image_url" for part in inputs))]
    else:
        raise ApiError(
            400, "Invalid 'input': expected a string, an array of strings or of content parts.", param="input"
        )
    tokens = sum(count_tokens(str(i)) for i in (inputs if isinstance(inputs, list) else [inputs]))
    await call.json(200, {"id": new_id("modr-", 16), "model": model, "results": results}, tokens)
