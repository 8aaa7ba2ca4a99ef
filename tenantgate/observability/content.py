"""Prompt and completion content for spans, in the GenAI conventions' message shape (opt-in only).

``gen_ai.input.messages`` / ``gen_ai.output.messages``: ``[{"role", "parts": [{"type": "text", "content"}...],
"finish_reason"}]``. Only built when ``TENANTGATE_TRACE_CONTENT`` is set and the request is sampled.
"""

from __future__ import annotations

from typing import Any

import orjson


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append({"type": "text", "content": part["text"]})
            elif isinstance(part, str):
                parts.append({"type": "text", "content": part})
            else:
                parts.append({"type": str(part.get("type", "unknown")) if isinstance(part, dict) else "unknown"})
        return parts
    return [] if content is None else [{"type": "unknown"}]


def input_messages(payload: dict[str, Any]) -> str | None:
    messages = payload.get("messages")
    if isinstance(messages, list):
        converted = [
            {"role": m.get("role", "user"), "parts": _parts(m.get("content"))} for m in messages if isinstance(m, dict)
        ]
        return orjson.dumps(converted).decode()
    prompt = payload.get("input", payload.get("prompt"))
    if prompt is None:
        return None
    if isinstance(prompt, list) and all(isinstance(item, dict) and "role" in item for item in prompt):
        return input_messages({"messages": prompt})
    return orjson.dumps([{"role": "user", "parts": _parts(prompt)}]).decode()


def output_messages(output: Any, finish_reasons: list[str]) -> str | None:
    finish_reason = finish_reasons[0] if finish_reasons else None
    if isinstance(output, str):
        message = {"role": "assistant", "parts": _parts(output), "finish_reason": finish_reason}
        return orjson.dumps([message]).decode()
    if not isinstance(output, list):
        return None
    converted = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("message"), dict):  # a chat completion choice
            message = item["message"]
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict):
                    function = call.get("function")
                    function = function if isinstance(function, dict) else {}
                    parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name")})
            converted.append(
                {"role": message.get("role", "assistant"), "parts": parts, "finish_reason": item.get("finish_reason")}
            )
        elif isinstance(item.get("text"), str):  # a legacy completion choice
            converted.append(
                {"role": "assistant", "parts": _parts(item["text"]), "finish_reason": item.get("finish_reason")}
            )
        elif item.get("type") == "message":  # a Responses API output item
            converted.append({"role": item.get("role", "assistant"), "parts": _parts(item.get("content"))})
    return orjson.dumps(converted).decode()
