"""A batch's input file, checked before the batch is created: every line must be a request this key may make.

The file is streamed from the upstream that holds it, line by line, bounded (OpenAI's 200 MB and 50,000 requests by
default; a line at most ``TENANTGATE_MAX_REQUEST_BODY_BYTES``). Each line must be a JSON object with a unique
``custom_id``, ``method`` ``POST``, the batch's endpoint as ``url`` and a ``body`` naming a ``model`` the key may
use; the first line that is not is refused in OpenAI's error shape, naming its number. Usage of a batch is metered
per line under an id made of the batch and the ``custom_id`` (hence unique ids). The estimate of the lines' tokens
(prompt, and the most output each allows) is what the batch holds against the tenant's batch queues and month.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tenantgate import tokens
from tenantgate.core.principal import Principal
from tenantgate.platform.errors import BadRequest, NotFound
from tenantgate.platform.limits.hook import answers, max_output_tokens
from tenantgate.platform.proxy import prompts
from tenantgate.platform.proxy.model_access import granted, on_own_upstreams
from tenantgate.platform.proxy.references import Reference, check_model_name, check_single_reading, references
from tenantgate.platform.upstream.registry import Routing
from tenantgate.tenants.limits.outputs import max_output_tokens as model_max_output

ENDPOINTS = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations"})
"""Batch endpoints the gateway meters (OpenAI's, minus images and videos, which it does not bill by batch yet)."""
_GENERATING = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/completions"})
_MAX_CUSTOM_ID = 512
_LINE_KEYS = (b'"custom_id"', b'"method"', b'"url"', b'"body"')
_YIELD_EVERY = 200


class InvalidBatchInput(BadRequest):
    code = "invalid_batch_input"


@dataclass(slots=True)
class BatchInput:
    requests: int = 0
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    """Estimated prompt tokens per model."""
    worst_tokens: dict[str, int] = field(default_factory=dict)
    """Prompt plus the most output each line allows, per model."""
    stored_chat: list[str] = field(default_factory=list)
    """The ``line_key`` of each chat completion line that asks ``store: true`` (what it stores becomes the caller's)."""


def line_key(custom_id: str) -> str:
    """A short fixed-size name of a line (12 characters, 72 bits of its custom_id's SHA-256), so that what a batch
    keeps about its lines stays small whatever their custom_ids (up to 512 characters each, 50,000 lines)."""
    return base64.urlsafe_b64encode(hashlib.sha256(custom_id.encode()).digest()[:9]).decode()


def _refuse(line: int, message: str, code: str = InvalidBatchInput.code) -> InvalidBatchInput:
    error = InvalidBatchInput(f"Line {line} of the input file: {message}", param="input_file_id")
    error.code = code
    return error


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 64 else text[:61] + "..."


async def check_lines(
    lines: AsyncIterator[tuple[int, bytes]],
    *,
    endpoint: str,
    principal: Principal,
    routing: Routing,
    max_requests: int,
    default_max_output: int,
    unpriced: Callable[[str], bool] | None = None,
    check_references: Callable[[list[Reference]], Awaitable[None]] | None = None,
    platform_prompts: Sequence[str] = (),
) -> BatchInput:
    """``unpriced`` (with ``TENANTGATE_UNPRICED_MODELS=refuse``): whether a model has no batch price; a line naming
    one is refused as a request for it would be. ``check_references``: raises ``NotFound`` unless every stored
    object a line's body names is the caller's (as for the same request sent directly); a stored prompt is left out
    of it when the caller may run it in the batch's account (``platform_prompts``, proxy/prompts.py), and is
    otherwise nobody's."""
    found = BatchInput()
    seen: set[bytes] = set()

    def prompt_filter(named: list[Reference]) -> list[Reference]:
        return prompts.batch_unchecked(named, principal, platform_prompts, routing.primary.name)

    async for number, raw in lines:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _refuse(number, "not a JSON object.", "invalid_json_line") from None
        if not isinstance(request, dict):
            raise _refuse(number, "not a JSON object.", "invalid_json_line")
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id or len(custom_id) > _MAX_CUSTOM_ID:
            raise _refuse(number, f"'custom_id' must be a string of 1 to {_MAX_CUSTOM_ID} characters.")
        digest = hashlib.sha256(custom_id.encode()).digest()[:16]
        if digest in seen:
            raise _refuse(
                number, f"the custom_id {_shown(custom_id)} is used by an earlier line.", "duplicate_custom_id"
            )
        seen.add(digest)
        if request.get("method") != "POST":
            raise _refuse(number, f"the method {_shown(request.get('method'))} is not POST.", "invalid_method")
        if request.get("url") != endpoint:
            raise _refuse(
                number,
                f"the url {_shown(request.get('url'))} does not match the batch's endpoint {endpoint}.",
                "mismatched_url",
            )
        body = request.get("body")
        if not isinstance(body, dict):
            raise _refuse(number, "'body' must be a JSON object.")
        await _read_once(number, endpoint, raw, body, check_references, prompt_filter)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _refuse(number, "the body names no model.", "missing_model")
        try:
            check_model_name(model)
        except BadRequest as invalid:
            raise _refuse(number, invalid.message, "invalid_model") from None
        targets = routing.targets(model)
        if not targets or not (
            granted(principal, routing, model)
            or (principal.allowed_models is None and on_own_upstreams(principal, targets))
        ):
            raise _refuse(
                number, f"the model {_shown(model)} does not exist or you do not have access to it.", "model_not_found"
            )
        if unpriced is not None and unpriced(model):
            raise _refuse(
                number,
                f"the model {_shown(model)} has no batch price; this gateway refuses requests it cannot price.",
                "model_not_priced",
            )
        found.requests += 1
        if found.requests > max_requests:
            raise _refuse(number, f"a batch may have at most {max_requests} requests.", "too_many_requests")
        prompt = tokens.estimate_prompt_tokens(body, model)
        output = 0
        if endpoint in _GENERATING:
            output = max_output_tokens(body) or answers(body) * model_max_output(model, default_max_output)
        if endpoint == "/v1/chat/completions" and body.get("store") is True:
            found.stored_chat.append(line_key(custom_id))
        found.prompt_tokens[model] = found.prompt_tokens.get(model, 0) + prompt
        found.worst_tokens[model] = found.worst_tokens.get(model, 0) + prompt + output
        if number % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    if not found.requests:
        raise InvalidBatchInput("The input file has no requests.", param="input_file_id")
    return found


async def _read_once(
    number: int,
    endpoint: str,
    raw: bytes,
    body: dict[str, Any],
    check_references: Callable[[list[Reference]], Awaitable[None]] | None,
    prompt_filter: Callable[[list[Reference]], list[Reference]] = list,
) -> None:
    """A line is a request the upstream runs later with the account's credentials, out of the gateway's sight:
    it is read as one (no key named twice, nested at most ``MAX_DEPTH`` levels) and every stored object it names
    must be the caller's now."""
    named = prompt_filter(references(endpoint, body, True))
    suspicious = bool(named) or b"\\u" in raw or any(raw.count(key) > 1 for key in _LINE_KEYS)
    try:
        check_single_reading(raw, body, escaped_or_nested=suspicious)
        if named and check_references is not None:
            await check_references(named)
    except NotFound as unknown:  # A's object or none at all: the same words, as on every route
        raise _refuse(number, unknown.message) from None
    except BadRequest as twice:
        raise _refuse(number, twice.message, twice.code or InvalidBatchInput.code) from None
