"""Image generation, edits and variations: a tiny valid PNG in OpenAI's answer shape, with gpt-image token usage.

gpt-image models answer with ``b64_json`` and usage (and can stream ``image_generation.*`` events); DALL-E models
answer with a ``url`` by default, as OpenAI does. The dev upstream serves those urls itself (``GET
/dev/images/<id>.png``) from a bounded in-memory store. The picture is always an 8x8 PNG of one colour derived from
the prompt, whatever size is asked for: it is a stand-in, not a generator.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import zlib
from collections import OrderedDict
from typing import Any

from tenantgate.devupstream.multipart import read_upload
from tenantgate.devupstream.wire import ApiError, Call, count_tokens, new_id, optional_int, require

# Output tokens of gpt-image-1 per picture, by quality and size (OpenAI's published table).
_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
_MAX_STORED = 1000


def tiny_png(seed: str, side: int = 8) -> bytes:
    """A valid ``side`` x ``side`` RGB PNG of one colour derived from ``seed``."""
    colour = hashlib.sha256(seed.encode()).digest()[:3]
    raw = (b"\x00" + colour * side) * side

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class ImageStore:
    """Pictures answered by url, kept until newer ones push them out."""

    def __init__(self) -> None:
        self._images: OrderedDict[str, bytes] = OrderedDict()

    def put(self, png: bytes) -> str:
        image_id = new_id("img-", 12)
        self._images[image_id] = png
        if len(self._images) > _MAX_STORED:
            self._images.popitem(last=False)
        return image_id

    def get(self, image_id: str) -> bytes | None:
        return self._images.get(image_id)


def _base_url(call: Call) -> str:
    for name, value in call.scope["headers"]:
        if name == b"host":
            return "http://" + str(value.decode("latin-1"))
    host, port = call.scope.get("server") or ("127.0.0.1", 80)
    return f"http://{host}:{port}"


async def generations(call: Call, payload: dict[str, Any], store: ImageStore) -> None:
    model = payload.get("model") or "dall-e-2"
    prompt = require(payload, "prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "Invalid 'prompt': expected a non-empty string.", param="prompt")
    count = optional_int(payload, "n") or 1
    if count > 10:
        raise ApiError(400, "Invalid 'n': expected at most 10.", code="integer_above_max_value", param="n")
    pngs = [tiny_png(f"{prompt}#{i}") for i in range(count)]
    created = int(time.time())
    if model.startswith("dall-e"):
        data: list[dict[str, Any]] = []
        for png in pngs:
            if payload.get("response_format") == "b64_json":
                item: dict[str, Any] = {"b64_json": base64.b64encode(png).decode()}
            else:
                item = {"url": f"{_base_url(call)}/dev/images/{store.put(png)}.png"}
            if model == "dall-e-3":
                item["revised_prompt"] = prompt
            data.append(item)
        await call.json(200, {"created": created, "data": data})
        return
    quality = str(payload.get("quality")) if payload.get("quality") in _OUTPUT_TOKENS else "medium"
    size = str(payload.get("size")) if payload.get("size") in _OUTPUT_TOKENS["low"] else "1024x1024"
    background = "transparent" if payload.get("background") == "transparent" else "opaque"
    text_tokens = count_tokens(prompt)
    output_tokens = _OUTPUT_TOKENS[quality][size] * count
    usage = {
        "input_tokens": text_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + output_tokens,
    }
    # The dev upstream only makes PNGs, so it says so whatever output_format was asked for.
    shape = {"background": background, "output_format": "png", "quality": quality, "size": size}
    if payload.get("stream"):
        await _stream(call, pngs[0], created, shape, usage, optional_int(payload, "partial_images") or 0)
        return
    data = [{"b64_json": base64.b64encode(png).decode()} for png in pngs]
    await call.json(200, {"created": created, "data": data, **shape, "usage": usage}, text_tokens)


async def _stream(
    call: Call, png: bytes, created: int, shape: dict[str, Any], usage: dict[str, Any], partials: int
) -> None:
    b64 = base64.b64encode(png).decode()
    await call.open_stream(tokens=usage["input_tokens"])
    for index in range(min(partials, 3)):
        await call.pace()
        event = {"type": "image_generation.partial_image", "b64_json": b64, "created_at": created, **shape}
        await call.sse({**event, "partial_image_index": index}, "image_generation.partial_image")
    await call.pace()
    done = {"type": "image_generation.completed", "b64_json": b64, "created_at": created, **shape, "usage": usage}
    await call.sse(done, "image_generation.completed")
    await call.end()


MAX_IMAGE_BYTES = 50 * 1024 * 1024


async def edits(call: Call, store: ImageStore, *, variation: bool) -> None:
    """``/images/edits`` (a prompt and an image) and ``/images/variations`` (an image; dall-e-2 only), multipart.

    Answered like a generation of the same model: dall-e by url (or b64_json), gpt-image with b64_json and usage,
    whose input counts the uploaded picture as image tokens."""
    upload = await read_upload(call.scope, call.receive, MAX_IMAGE_BYTES, file_field="image")
    model = upload.get("model") or "dall-e-2"
    if upload.filename is None:
        raise ApiError(400, "Missing required parameter: 'image'.", code="missing_required_parameter", param="image")
    if variation and model != "dall-e-2":
        raise ApiError(400, f"Invalid model {model}. Only dall-e-2 supports variations.", param="model")
    prompt = upload.get("prompt") or ""
    if not variation and not prompt:
        raise ApiError(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter", param="prompt")
    fields: dict[str, Any] = {name: values[-1] for name, values in upload.fields.items() if values}
    n = fields.get("n", "1")
    if not n.isdigit() or not 1 <= int(n) <= 10:
        raise ApiError(400, f"Invalid 'n': {n}. Expected an integer between 1 and 10.", param="n")
    payload = {**fields, "model": model, "n": int(n), "prompt": prompt or f"variation of {upload.filename}"}
    payload.pop("stream", None)
    if model.startswith("dall-e"):
        await generations(call, payload, store)
        return
    image_tokens = 65 + 129 * max(1, upload.file_size // (512 * 512))
    await _priced_generation(call, payload, image_tokens)


async def json_edits(call: Call, payload: dict[str, Any]) -> None:
    """``/images/edits`` with a JSON body (GPT image models): the images named by ``file_id`` or ``image_url``."""
    model = payload.get("model")
    if not isinstance(model, str) or not model.startswith("gpt-image"):
        raise ApiError(400, "A JSON image edit needs a GPT image model.", param="model")
    images = payload.get("images")
    if not isinstance(images, list) or not images or not all(isinstance(i, dict) for i in images):
        raise ApiError(400, "Missing required parameter: 'images'.", code="missing_required_parameter", param="images")
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter", param="prompt")
    n = payload.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 10:
        raise ApiError(400, f"Invalid 'n': {n}. Expected an integer between 1 and 10.", param="n")
    await _priced_generation(call, {**payload, "n": n}, 65 + 129 * len(images))


async def _priced_generation(call: Call, payload: dict[str, Any], image_tokens: int) -> None:
    """A gpt-image edit: its usage counts the uploaded picture's tokens as input."""
    quality = str(payload.get("quality")) if payload.get("quality") in _OUTPUT_TOKENS else "medium"
    size = str(payload.get("size")) if payload.get("size") in _OUTPUT_TOKENS["low"] else "1024x1024"
    count = int(payload["n"])
    text_tokens = count_tokens(str(payload["prompt"]))
    output_tokens = _OUTPUT_TOKENS[quality][size] * count
    usage = {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + image_tokens + output_tokens,
    }
    data = [{"b64_json": base64.b64encode(tiny_png(f"{payload['prompt']}#{i}")).decode()} for i in range(count)]
    shape = {"background": "opaque", "output_format": "png", "quality": quality, "size": size}
    await call.json(200, {"created": int(time.time()), "data": data, **shape, "usage": usage}, text_tokens)
