"""The Responses API: create (plain or as its named-event stream), retrieve, delete, input items, cancel."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tenantgate.devupstream.chat import REASONING_TOKENS
from tenantgate.devupstream.conversations import Conversations
from tenantgate.devupstream.response_store import ResponseStore, StoredResponse, input_items, items_text, page
from tenantgate.devupstream.response_tools import compaction, input_token_count, tool_calls, with_prompt
from tenantgate.devupstream.wire import (
    SERVER_ERROR,
    Abort,
    ApiError,
    Call,
    count_tokens,
    is_reasoning_model,
    new_id,
    optional_int,
    reply_pieces,
    require_model,
)


def _not_found(response_id: str) -> ApiError:
    return ApiError(404, f"Response with id '{response_id}' not found.", param="response_id")


def _usage(input_tokens: int, output_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    output_tokens += reasoning_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def _shell(payload: dict[str, Any], model: str, previous: str | None) -> dict[str, Any]:
    """The response object without its outcome, echoing the request's settings as OpenAI does."""
    reasoning: dict[str, Any] = payload["reasoning"] if isinstance(payload.get("reasoning"), dict) else {}
    effort = reasoning.get("effort") or ("medium" if is_reasoning_model(model) else None)
    return {
        "id": new_id("resp_", 25),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": bool(payload.get("background")),
        "billing": {"payer": "developer"},
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "max_tool_calls": payload.get("max_tool_calls"),
        "model": model,
        "output": [],
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": previous,
        "prompt_cache_key": payload.get("prompt_cache_key"),
        "reasoning": {"effort": effort, "summary": reasoning.get("summary")},
        "safety_identifier": payload.get("safety_identifier"),
        "service_tier": "default",
        "store": payload.get("store", True) is not False,
        "temperature": payload.get("temperature", 1.0),
        "text": payload.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "top_logprobs": payload.get("top_logprobs", 0),
        "top_p": payload.get("top_p", 1.0),
        "truncation": payload.get("truncation", "disabled"),
        "usage": None,
        "user": payload.get("user"),
        "metadata": payload.get("metadata") or {},
    }


class Responses:
    """The /v1/responses family, over one bounded store of the responses it produced."""

    def __init__(self, store: ResponseStore, conversations: Conversations | None = None) -> None:
        self.store = store
        self.conversations = conversations

    async def create(self, call: Call, payload: dict[str, Any]) -> None:
        payload = with_prompt(payload)
        model = require_model(payload)
        limit = optional_int(payload, "max_output_tokens")
        if limit is not None and limit < 16:
            raise ApiError(
                400,
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {limit} "
                "instead.",
                code="integer_below_min_value",
                param="max_output_tokens",
            )
        previous_id = payload.get("previous_response_id")
        conversation_id = self._conversation(payload)
        items, prompt, input_tokens = self._input(payload, conversation_id)
        answer = reply_pieces(prompt, limit)
        reasoning_tokens = REASONING_TOKENS if is_reasoning_model(model) else 0
        incomplete = bool(limit and len(answer) >= limit)

        shell = _shell(payload, model, previous_id)
        if shell["background"] and not shell["store"]:
            raise ApiError(400, "Background mode requires store=true.", param="background")
        message = {
            "id": new_id("msg_", 25),
            "type": "message",
            "status": "incomplete" if incomplete else "completed",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(answer)}],
            "role": "assistant",
        }
        output: list[dict[str, Any]] = (
            [{"id": new_id("rs_", 25), "type": "reasoning", "summary": []}] if reasoning_tokens else []
        )
        output.extend(tool_calls(payload, prompt))
        output.append(message)
        final = {
            **shell,
            "status": "incomplete" if incomplete else "completed",
            "completed_at": None if incomplete else int(time.time()),
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "output": output,
            "usage": _usage(input_tokens, len(answer), reasoning_tokens),
        }
        if conversation_id is not None and self.conversations is not None:
            shell["conversation"] = final["conversation"] = {"id": conversation_id}
            self.conversations.turn(conversation_id, items, output)
        stored = StoredResponse(final, items)
        if shell["background"]:
            stored.ready_at = time.time() + call.token_delay * (reasoning_tokens + len(answer))
            self.store.put(stored)
            await call.json(200, {**shell, "status": "queued"}, input_tokens)
            return
        if payload.get("stream"):
            stream_options = payload.get("stream_options")
            obfuscate = not (isinstance(stream_options, dict) and stream_options.get("include_obfuscation") is False)
            if not shell["store"]:
                await _stream(call, shell, final, answer, obfuscate, _Progress())
                return
            # Retrievable (in progress) from its first event on, as on OpenAI; finished before its terminal event
            # goes out; a cut keeps what was generated until then.
            self.store.put(StoredResponse(shell, items))
            call.watch_disconnect()
            progress = _Progress()
            try:
                await _stream(call, shell, final, answer, obfuscate, progress, finished=lambda: self.store.put(stored))
            except Abort:
                if not progress.finished:
                    self.store.put(StoredResponse(_cut(final, answer, progress, failed=call.errored), items))
                raise
            return
        await call.pace(reasoning_tokens + len(answer))
        await call.json(200, final, input_tokens)
        if shell["store"]:
            self.store.put(stored)

    def _conversation(self, payload: dict[str, Any]) -> str | None:
        """The conversation a turn belongs to (``conversation`` as an id or ``{"id": ...}``); 404 if unknown."""
        value = payload.get("conversation")
        if value is None:
            return None
        conversation_id = value.get("id") if isinstance(value, dict) else value
        if not isinstance(conversation_id, str) or self.conversations is None:
            raise ApiError(400, "Invalid 'conversation': expected an id or an object with an id.", param="conversation")
        if payload.get("previous_response_id") is not None:
            raise ApiError(
                400, "Use either 'conversation' or 'previous_response_id', not both.", param="previous_response_id"
            )
        self.conversations.get(conversation_id)
        return conversation_id

    def _input(
        self, payload: dict[str, Any], conversation_id: str | None = None
    ) -> tuple[list[dict[str, Any]], str, int]:
        """A request's input items, their text and its input tokens (earlier turns included, as on OpenAI)."""
        previous_id = payload.get("previous_response_id")
        context_tokens = 0
        if previous_id is not None:
            previous = self.store.get(str(previous_id))
            if previous is None:
                raise ApiError(
                    404,
                    f"Previous response with id '{previous_id}' not found.",
                    code="previous_response_not_found",
                    param="previous_response_id",
                )
            context_tokens = int((previous.response.get("usage") or {}).get("total_tokens", 0))
        if conversation_id is not None:
            earlier = self.conversations.get(conversation_id).items if self.conversations else []
            context_tokens += count_tokens(items_text(earlier)) + 3 * len(earlier)
        items = input_items(payload.get("input"))
        instructions = payload.get("instructions")
        prompt = items_text(items)
        input_tokens = context_tokens + count_tokens(prompt) + 3 * max(1, len(items))
        if isinstance(instructions, str):
            input_tokens += count_tokens(instructions) + 3
        return items, prompt, input_tokens

    async def input_tokens(self, call: Call, payload: dict[str, Any]) -> None:
        """``POST /responses/input_tokens``: what a create with this body would count as input (no model work)."""
        payload = with_prompt(payload)
        _, _, input_tokens = self._input(payload, self._conversation(payload))
        await call.json(200, input_token_count(input_tokens))

    async def compact(self, call: Call, payload: dict[str, Any]) -> None:
        """``POST /responses/compact``: the conversation so far, compacted by a (metered) model pass."""
        require_model(payload)
        items, prompt, input_tokens = self._input(payload, self._conversation(payload))
        await call.pace(4)
        await call.json(200, compaction(items, input_tokens, prompt), input_tokens)

    async def retrieve(self, call: Call, response_id: str) -> None:
        stored = self.store.get(response_id)
        if stored is None:
            raise _not_found(response_id)
        await call.json(200, stored.view())

    async def delete(self, call: Call, response_id: str) -> None:
        if not self.store.delete(response_id):
            raise _not_found(response_id)
        await call.json(200, {"id": response_id, "object": "response.deleted", "deleted": True})

    async def list_input_items(self, call: Call, response_id: str, query: dict[str, str]) -> None:
        stored = self.store.get(response_id)
        if stored is None:
            raise _not_found(response_id)
        await call.json(200, page(stored.input_items, query))

    async def cancel(self, call: Call, response_id: str) -> None:
        stored = self.store.get(response_id)
        if stored is None:
            raise _not_found(response_id)
        if not stored.response.get("background"):
            raise ApiError(400, "Only responses created with background=true can be cancelled.")
        if stored.view()["status"] == "in_progress":
            stored.cancelled = True
        # Cancelling a response that already finished changes nothing and returns it as it is.
        await call.json(200, stored.view())


@dataclass
class _Progress:
    """What a stream generated so far (sent or not): a cut stream's stored usage counts it."""

    reasoning: int = 0
    visible: int = 0
    finished: bool = False


def _cut(final: dict[str, Any], answer: list[str], progress: _Progress, *, failed: bool) -> dict[str, Any]:
    """The stored response of a stream cut short (client gone, connection dropped, in-stream error): the output
    and usage of what was generated until then, as OpenAI bills generated tokens whether or not anyone read them."""
    *before, message = final["output"]
    output = [item for item in before if item["type"] != "reasoning" or progress.reasoning]
    if progress.visible:
        part = {**message["content"][0], "text": "".join(answer[: progress.visible])}
        output.append({**message, "status": "incomplete", "content": [part]})
    return {
        **final,
        "status": "failed" if failed else "incomplete",
        "completed_at": None,
        "error": {"code": "server_error", "message": SERVER_ERROR} if failed else None,
        "incomplete_details": None,
        "output": output,
        "usage": _usage(final["usage"]["input_tokens"], progress.visible, progress.reasoning),
    }


async def _stream(
    call: Call,
    shell: dict[str, Any],
    final: dict[str, Any],
    answer: list[str],
    obfuscate: bool,
    progress: _Progress,
    finished: Callable[[], None] = lambda: None,
) -> None:
    """The named-event stream, in the order OpenAI sends it; the terminal event carries the full response.

    A reasoning model thinks (one token delay per reasoning token) between its reasoning item's ``added`` and
    ``done`` events, before the first visible token."""
    sequence = 0

    async def emit(event: dict[str, Any]) -> None:
        nonlocal sequence
        await call.sse({"type": event["type"], "sequence_number": sequence, **event}, event["type"], error=error)
        sequence += 1

    def error() -> bytes:
        data = {"type": "error", "sequence_number": sequence, "code": "server_error", "message": SERVER_ERROR}
        return b"event: error\ndata: " + orjson.dumps({**data, "param": None}) + b"\n\n"

    await call.open_stream(tokens=final["usage"]["input_tokens"])
    await emit({"type": "response.created", "response": shell})
    await emit({"type": "response.in_progress", "response": shell})
    *before, message = final["output"]
    index = 0
    reasoning_tokens = final["usage"]["output_tokens_details"]["reasoning_tokens"]
    for item in before:  # reasoning, then the hosted tools' calls
        await emit({"type": "response.output_item.added", "output_index": index, "item": item})
        for _ in range(reasoning_tokens if item["type"] == "reasoning" else 0):
            await call.pace()
            progress.reasoning += 1
        await emit({"type": "response.output_item.done", "output_index": index, "item": item})
        index += 1
    where = {"item_id": message["id"], "output_index": index, "content_index": 0}
    await emit(
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**message, "status": "in_progress", "content": []},
        }
    )
    part = message["content"][0]
    await emit({"type": "response.content_part.added", **where, "part": {**part, "text": ""}})
    for piece in answer:
        await call.pace()
        progress.visible += 1
        delta: dict[str, Any] = {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        if obfuscate:
            # OpenAI pads deltas with a random string so their sizes do not reveal the tokens.
            delta["obfuscation"] = os.urandom(8).hex()[: 16 - min(len(piece), 12)]
        await emit(delta)
    await emit({"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []})
    await emit({"type": "response.content_part.done", **where, "part": part})
    await emit({"type": "response.output_item.done", "output_index": index, "item": message})
    finished()
    progress.finished = True
    if final["status"] == "incomplete":
        await emit({"type": "response.incomplete", "response": final})
    else:
        final["completed_at"] = int(time.time())
        await emit({"type": "response.completed", "response": final})
    await call.end()
