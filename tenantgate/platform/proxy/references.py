"""What a JSON request body names, read once: its references to objects stored upstream, and no duplicate keys.

**References.** Every id of an upstream-stored object a request names must be the caller's before anything is
forwarded: ``previous_response_id``, input items passed by id (``item_reference`` and any input item carrying an
``id``), and ids of files, vector stores, containers and conversations wherever they appear. Files, conversations
and vector stores (a ``file_search`` tool's ``vector_store_ids``) are owned like responses (proxy/object_answers.py),
and so are a chat answer's audio (a later message names it as ``audio.id``); objects the gateway does not track per
tenant (containers, skills) belong to nobody here, so naming one gets the same 404 as an id that never existed. Any
other ``*_id`` or ``*_ids`` key whose value carries the prefix of a stored object (``file-``, ``vs_``, ``resp_``,
``cntr_``...) is checked as a reference to that object: an unknown key fails closed.

**One reading.** orjson keeps the last of duplicate keys; another parser (the upstream's) may keep the first, so a
body like ``{"model": "allowed", "model": "other"}`` (or two ``size``/``quality`` of an image request, which price
it) could be checked as one thing and served as another. A body in which any object names a key twice is refused
with 400. Proving the absence costs a second, slower parse, so it is done only when a key could be duplicated or
spelled with escapes: *any* top-level key (the gateway reads many for routing, limits and metering, and the list
grows) whose quoted name occurs as a key more than once in the raw bytes, a top-level key JSON would have to escape,
a body that may name stored objects below its top level, or one containing a ``\\u`` or ``\\/`` escape. Other
bodies go through with the one orjson parse and a few ``bytes.count`` calls.

**Bounded nesting.** orjson reads 1,024 levels but writes only 254 (a body the gateway rewrites, e.g. a stream's
``stream_options``, would fail), and the second parse and the walks below are Python, which would hit the
interpreter's recursion limit first (a 500). A body nested deeper than ``MAX_DEPTH`` levels is refused with 400
(no OpenAI request needs more than a few dozen); the walk over a body is iterative. The common body pays one pair
of ``bytes.count``: a body with fewer brackets than ``MAX_DEPTH`` cannot be nested deeper.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tenantgate.platform.errors import BadRequest

_TOP_LEVEL_KEYS = (
    "model", "stream", "stream_options", "n", "best_of", "max_tokens", "max_completion_tokens", "max_output_tokens",
    "previous_response_id", "conversation", "store", "background", "service_tier", "input", "messages", "prompt",
    "tools",
)  # fmt: skip
_REFERENCE_KEYS = (
    "file_id", "file_ids", "vector_store_ids", "container", "container_id", "skill_id", "conversation",
    "previous_response_id", "audio",
)  # fmt: skip
# Beyond the keys above, any ``*_id`` / ``*_ids`` value carrying the prefix of an object OpenAI stores is taken for a
# reference to it (fails closed: a key the upstream dereferences that this list does not know yet is still checked).
_STORED_PREFIXES = (
    ("file-", "file"), ("vs_", "vector_store"), ("resp_", "response"), ("conv_", "conversation"),
    ("cntr_", "container"), ("audio_", "audio"), ("batch_", "batch"), ("upload_", "upload"),
    ("chatcmpl-", "chat_completion"), ("vsfb_", "vector_store_file_batch"), ("pmpt_", "prompt"),
)  # fmt: skip

# Routes whose ``input`` items may name stored items by id (what a Responses request takes, counted or compacted).
_ITEMS_PATHS = frozenset({"/v1/responses", "/v1/responses/input_tokens", "/v1/responses/compact"})
# The caller's own labels, which no upstream dereferences (a batch line's ``custom_id`` may be "file-3-line-7").
_LABELS = frozenset({"custom_id"})
_LIST_KEYS = {"file_ids": "file", "vector_store_ids": "vector_store"}


@dataclass(frozen=True, slots=True)
class Reference:
    kind: str
    """response, item, conversation, file, vector_store, container, prompt..."""
    id: str
    param: str
    """Where the body names it, for the error (``previous_response_id``, ``input[2].id``, ...)."""


# Quoted spellings of the keys bodies commonly have at their top level, made once (any other is made per request).
_QUOTED = {
    name: b'"' + name.encode() + b'"'
    for name in (
        *_TOP_LEVEL_KEYS, "temperature", "top_p", "user", "text", "tool_choice", "parallel_tool_calls", "metadata",
        "instructions", "reasoning", "reasoning_effort", "response_format", "seed", "stop", "logprobs", "top_logprobs",
        "frequency_penalty", "presence_penalty", "logit_bias", "modalities", "audio", "size", "quality", "style",
        "voice", "dimensions", "encoding_format", "truncation", "include", "prompt_cache_key", "safety_identifier",
        "verbosity", "web_search_options", "prediction", "suffix", "echo", "output_format", "moderation",
    )
}  # fmt: skip
# Characters a JSON string must (or, for ``/``, may) escape: a key holding one may be spelled two ways in the bytes.
_ESCAPED_IN_JSON = re.compile(r'["\\/\x00-\x1f]')
# The escapes that can spell a key another way without a character it must escape: ``\\u0065``, ``\\/``.
_ESCAPE = re.compile(rb"\\[u/]")

MAX_DEPTH = 128
"""Levels of objects and arrays a JSON body may nest (a Responses input item's content part's annotation is 6;
a tool's JSON schema, which OpenAI caps at 10 levels of nesting in strict mode, some 25)."""


def _may_name_objects(path: str, raw: bytes) -> bool:
    """Whether the body may hold a reference anywhere below its top level (every reference key ends in ``_id``,
    ``_ids``, ``container``, ``audio`` or ``item_reference``; on /v1/responses input items name themselves by
    ``id``)."""
    return (
        b"_id" in raw
        or b"container" in raw
        or b"item_reference" in raw
        or b'"audio"' in raw
        or (path in _ITEMS_PATHS and b'"id"' in raw)
    )


def inspect_body(path: str, raw: bytes, payload: dict[str, Any]) -> list[Reference]:
    """The body read once: 400 if it names a key twice where that could matter; else the stored objects it names
    (checked for ownership later, before anything is forwarded)."""
    escaped_or_nested = _ESCAPE.search(raw) is not None or _may_name_objects(path, raw)
    _check_single_reading(raw, payload, escaped_or_nested)
    return references(path, payload, escaped_or_nested)


def check_single_reading(raw: bytes, payload: dict[str, Any], escaped_or_nested: bool) -> None:
    """400 if the body is nested deeper than ``MAX_DEPTH`` or names a key twice where that could matter (see the
    module's docstring).

    Cheap for the common body: a top-level key can only be duplicated if its quoted name occurs as a key more than
    once in the raw bytes, and a duplicate's last value is in ``payload``, so only the keys ``payload`` holds need
    counting.
    """
    _check_single_reading(raw, payload, escaped_or_nested or _ESCAPE.search(raw) is not None)


def _check_single_reading(raw: bytes, payload: dict[str, Any], escaped_or_nested: bool) -> None:
    """``check_single_reading`` for a caller that looked for escapes already (``escaped_or_nested`` then says)."""
    check_depth(raw, payload)
    if escaped_or_nested or _may_repeat_a_key(raw, payload):
        try:
            json.loads(raw, object_pairs_hook=_refuse_duplicates)
        except _DuplicateKey as duplicate:
            raise BadRequest(
                f"The request body names the key {_shown_key(duplicate.key)} more than once in one object; send each "
                "key once.",
                param=duplicate.key[:64],
                code="duplicate_key",
            ) from None
        except RecursionError:  # not reachable below MAX_DEPTH; a 400 all the same, never a 500
            raise _too_deep() from None
        except ValueError:
            pass  # orjson accepted what json does not (or the reverse): orjson's reading is the one forwarded


def _may_repeat_a_key(raw: bytes, payload: dict[str, Any]) -> bool:
    """Whether some top-level key may occur more than once as a key in one object. A quoted name followed by ``,``
    ``}`` or ``]`` is a value, one followed by ``:`` a key; one followed by whitespace may be either and counts as a
    key. A name that also names keys of nested objects (``text`` of a Responses body and of its content parts) is
    cleared by counting the objects that hold it: as many as its occurrences as a key means none holds it twice."""
    nested: dict[str, int] = {}
    for key in payload:
        quoted = _QUOTED.get(key)
        if quoted is None:
            if _ESCAPED_IN_JSON.search(key) is not None:
                return True  # spelled with escapes in ``raw``: counting its plain spelling proves nothing
            quoted = b'"' + key.encode() + b'"'
        seen = raw.count(quoted)
        if seen > 1:
            keys = raw.count(quoted + b":")
            values = raw.count(quoted + b",") + raw.count(quoted + b"}") + raw.count(quoted + b"]")
            if keys + values < seen:
                return True  # some occurrence followed by whitespace: not worth telling apart
            if keys > 1:
                nested[key] = keys
    return bool(nested) and _objects_holding(payload, nested.keys()) != nested


def _objects_holding(payload: dict[str, Any], names: Iterable[str]) -> dict[str, int]:
    """How many objects in ``payload`` (itself included) hold each of ``names``; iterative, plain loops (this runs
    on the hot path for bodies like a Responses request with ``text`` at its top level and in its content parts)."""
    counts = dict.fromkeys(names, 0)
    stack: list[Any] = [payload]
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        if type(value) is dict:
            for name in counts:
                if name in value:
                    counts[name] += 1
            value = value.values()
        for child in value:
            kind = type(child)
            if kind is dict or kind is list:
                push(child)
    return counts


def check_depth(raw: bytes, payload: Any) -> None:
    """400 if ``payload`` (parsed from ``raw``) nests containers deeper than ``MAX_DEPTH``. Free for a body with
    fewer brackets than that; otherwise an iterative walk over its containers (never recursion)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _too_deep() -> BadRequest:
    return BadRequest(
        f"The request body nests objects and arrays more than {MAX_DEPTH} levels deep.", code="nesting_too_deep"
    )


def _shown_key(key: str) -> str:
    return repr(key if len(key) <= 64 else key[:61] + "...")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


_BOOLEAN_FIELDS = ("stream", "store")
_RESPONSES_BOOLEAN_FIELDS = (*_BOOLEAN_FIELDS, "background")
"""``background`` is a boolean on the Responses API only: on image routes it is a string (``"transparent"``)."""
_COUNT_FIELDS = {
    "n": 128,
    "best_of": 20,
    "max_tokens": 2**31,
    "max_completion_tokens": 2**31,
    "max_output_tokens": 2**31,
}


def check_admission_fields(payload: dict[str, Any], path: str) -> None:
    """The fields admission and metering read must have the types OpenAI requires, so the gateway and the upstream
    cannot read them differently (``"stream": "true"`` is not a stream here and a 400 there; a string
    ``max_tokens`` is no cap here and may be one elsewhere). OpenAI's messages and 400s."""
    for name in _RESPONSES_BOOLEAN_FIELDS if path == "/v1/responses" else _BOOLEAN_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, bool):
            raise BadRequest(f"{_json(value)} is not of type 'boolean' - '{name}'", param=name, code="invalid_type")
    for name, most in _COUNT_FIELDS.items():
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{_json(value)} is not of type 'integer' - '{name}'", param=name, code="invalid_type")
        if not 1 <= value <= most:
            raise BadRequest(
                f"Invalid '{name}': {value}. It must be between 1 and {most}.", param=name, code="integer_out_of_range"
            )


_MODEL_NAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_MODEL_NAME = 256


def check_model_name(model: str) -> None:
    """400 for a model name no upstream has: one with a control character (``gpt-4o-mini\\u0000`` was admitted for
    keys without an allow-list and stored unpriced, while the answer named the priced model) or of more than
    ``MAX_MODEL_NAME`` characters."""
    if len(model) > MAX_MODEL_NAME or _MODEL_NAME_UNSAFE.search(model) is not None:
        raise BadRequest(
            f"Invalid 'model': {_json(model)}. A model name has at most {MAX_MODEL_NAME} characters and no control "
            "characters.",
            param="model",
            code="invalid_model",
        )


def _json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 64 else text[:61] + "..."


def references(path: str, payload: dict[str, Any], escaped_or_nested: bool) -> list[Reference]:
    """Every stored-object id the body of a request to ``path`` names."""
    found: list[Reference] = []
    previous = payload.get("previous_response_id")
    if previous is not None:
        found.append(
            Reference("response", previous if isinstance(previous, str) else str(previous), "previous_response_id")
        )
    prompt = payload.get("prompt")
    if path in _ITEMS_PATHS and prompt is not None:
        # A stored prompt (proxy/prompts.py says which a tenant may run); a bare string is checked as an id too.
        prompt_id = prompt.get("id") if isinstance(prompt, dict) else prompt
        if prompt_id is not None:
            found.append(Reference("prompt", str(prompt_id), "prompt.id" if isinstance(prompt, dict) else "prompt"))
    if not escaped_or_nested and "conversation" not in payload:
        return found
    conversation = payload.get("conversation")
    if conversation is not None:
        conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
        found.append(Reference("conversation", str(conversation_id), "conversation"))
    given = payload.get("input")
    if path in _ITEMS_PATHS and isinstance(given, list):
        for index, item in enumerate(given):
            if isinstance(item, dict) and "id" in item:
                found.append(Reference("item", str(item["id"]), f"input[{index}].id"))
    elif path in _ITEMS_PATHS and isinstance(given, dict) and "id" in given:
        # One item where a list is due: a lenient upstream may read it as a list of one, so it is checked as one.
        found.append(Reference("item", str(given["id"]), "input.id"))
    for key, value, where in _walk(payload, ""):
        if key == "file_id":
            found.append(Reference("file", str(value), where))
        elif key in _LIST_KEYS and value is not None:
            kind = _LIST_KEYS[key]
            if isinstance(value, list):
                found.extend(Reference(kind, str(v), f"{where}[{i}]") for i, v in enumerate(value))
            else:  # not a list: some parser may still read it as one id, so it is checked as one (fails closed)
                found.append(Reference(kind, str(value), where))
        elif key in ("container", "container_id") and isinstance(value, str):
            found.append(Reference("container", value, where))
        elif key == "skill_id" and value is not None:
            found.append(Reference("skill", str(value), where))
        elif key == "audio":
            # A chat message's earlier audio answer, named by id (``{"role": "assistant", "audio": {"id": ...}}``).
            if isinstance(value, dict) and "id" in value:
                found.append(Reference("audio", str(value["id"]), f"{where}.id"))
        else:  # a *_id or *_ids key not listed: a reference if its value looks like a stored object's id
            for one, at in _ids_of(value, where):
                stored = _stored_kind(one)
                if stored is not None:
                    found.append(Reference(stored, one, at))
    return found


def _ids_of(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield value, where
    elif isinstance(value, list):
        yield from ((v, f"{where}[{i}]") for i, v in enumerate(value) if isinstance(v, str))


def _stored_kind(value: str) -> str | None:
    for prefix, kind in _STORED_PREFIXES:
        if value.startswith(prefix):
            return kind
    return None


def _is_reference_key(key: str) -> bool:
    return key in _REFERENCE_KEYS or (key.endswith(("_id", "_ids")) and key not in _LABELS)


def _walk(value: Any, where: str) -> Iterator[tuple[str, Any, str]]:
    """Every reference key under ``value``, depth first in document order; iterative (a body may nest 1,024 levels,
    which a recursive walk would not survive)."""
    stack = [_children(value, where)]
    while stack:
        for key, child, here in stack[-1]:
            if key is not None and _is_reference_key(key):
                yield key, child, here
            if isinstance(child, dict | list):
                stack.append(_children(child, here))
                break
        else:
            stack.pop()


def _children(value: Any, where: str) -> Iterator[tuple[str | None, Any, str]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield key, child, f"{where}.{key}" if where else key
    elif isinstance(value, list):
        for index, child in enumerate(value):
            if isinstance(child, dict | list):
                yield None, child, f"{where}[{index}]"
