"""What the dev upstream's Responses API adds around a plain answer: stored prompts, hosted tools' calls, token
counting and compaction.

- Stored prompts: ``{"prompt": {"id": "pmpt_dev_haiku"}}`` names a prompt kept upstream with its own model, so a
  request may omit ``model`` (the answer names it). Other ids are unknown (404).
- Hosted tools: a request whose ``tools`` include ``web_search`` (or ``web_search_preview``), ``file_search`` or
  ``code_interpreter`` gets one ``web_search_call``, ``file_search_call`` or ``code_interpreter_call`` output item
  per such tool, before its message, as OpenAI's output shows them (what a gateway meters per call or session).
"""

from __future__ import annotations

import time
from typing import Any

from tenantgate.devupstream.wire import ApiError, count_tokens, new_id

STORED_PROMPTS: dict[str, dict[str, str]] = {
    "pmpt_dev_haiku": {"model": "gpt-4o-mini", "instructions": "Answer in a haiku."},
}


def stored_prompt(payload: dict[str, Any]) -> dict[str, str] | None:
    """The stored prompt a request names (404 if unknown); None when it names none."""
    prompt = payload.get("prompt")
    if prompt is None:
        return None
    prompt_id = prompt.get("id") if isinstance(prompt, dict) else None
    if not isinstance(prompt_id, str):
        raise ApiError(400, "Invalid type for 'prompt.id': expected a string.", param="prompt.id")
    found = STORED_PROMPTS.get(prompt_id)
    if found is None:
        raise ApiError(404, f"Prompt with id '{prompt_id}' not found.", param="prompt.id")
    return found


def with_prompt(payload: dict[str, Any]) -> dict[str, Any]:
    """The request with its stored prompt's model and instructions filled in (what it says itself wins)."""
    prompt = stored_prompt(payload)
    if prompt is None:
        return payload
    return {"model": prompt["model"], "instructions": prompt["instructions"], **payload}


def _tool_types(payload: dict[str, Any]) -> list[str]:
    tools = payload.get("tools")
    return [t["type"] for t in tools if isinstance(t, dict) and isinstance(t.get("type"), str)] if tools else []


def tool_calls(payload: dict[str, Any], query: str) -> list[dict[str, Any]]:
    """The hosted tools' call items of an answer to ``payload`` (each tool asked for is called once)."""
    items: list[dict[str, Any]] = []
    for kind in _tool_types(payload):
        if kind in ("web_search", "web_search_preview", "web_search_2025_08_26"):
            items.append(
                {
                    "id": new_id("ws_", 25),
                    "type": "web_search_call",
                    "status": "completed",
                    "action": {"type": "search", "query": query[:200], "sources": None},
                }
            )
        elif kind == "file_search":
            items.append(
                {
                    "id": new_id("fs_", 25),
                    "type": "file_search_call",
                    "status": "completed",
                    "queries": [query[:200]],
                    "results": None,
                }
            )
        elif kind == "code_interpreter":
            items.append(
                {
                    "id": new_id("ci_", 25),
                    "type": "code_interpreter_call",
                    "status": "completed",
                    "code": "print(len('dev'))",
                    "container_id": new_id("cntr_", 25),
                    "outputs": None,
                }
            )
    return items


def input_token_count(input_tokens: int) -> dict[str, Any]:
    return {"object": "response.input_tokens", "input_tokens": input_tokens}


def compaction(items: list[dict[str, Any]], input_tokens: int, text: str) -> dict[str, Any]:
    """A compacted conversation: its user messages, then one compaction item; usage as a short model pass."""
    kept = [item for item in items if item.get("role") == "user"]
    output_tokens = max(1, count_tokens(text) // 4)
    summary = {"id": new_id("cmp_", 25), "type": "compaction", "encrypted_content": "gAAAA" + new_id("", 40)}
    return {
        "id": new_id("resp_", 25),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [*kept, summary],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }
