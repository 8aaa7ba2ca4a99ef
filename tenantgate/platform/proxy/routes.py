"""The OpenAI routes the gateway serves, as fixed templates: how a caller's path is matched, and the upstream's built.

Nothing the caller sent is ever spliced into an upstream URL as text. A route is a (method, template) pair; its
parameters must each be one path segment of a strict grammar (no ``/``, ``\\``, ``%``, ``?``, ``#``, ``;``, no
leading dot, ASCII only), so they cannot add a segment, a dot-segment, a query or a fragment even behind a front
that decodes and normalizes paths; they are percent-encoded all the same. The upstream path comes from the route's
own upstream template, and only the query parameters OpenAI defines for that route are forwarded, re-encoded by
name (anything else the caller put in the query string, e.g. ``api_key=``, stays here), each given once and within
its grammar (``Route.checked_query``, run before anything else for every /v1 request): what the gateway checked is
what the upstream gets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from tenantgate.platform.errors import BadRequest
from tenantgate.platform.upstream.paths import UpstreamPath, is_segment, segment

_MAX_QUERY_PARAMS = 32


Body = Literal["json", "multipart", "none"]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    """The caller-facing template, e.g. ``/v1/responses/{response_id}/input_items``; also the telemetry route."""
    operation: str
    """OpenTelemetry ``gen_ai.operation.name`` (or the closest OpenAI API name)."""
    body: Body = "none"
    query: frozenset[str] = frozenset()
    """Query parameters OpenAI defines for this route; only these are forwarded."""
    default_model: str | None = None
    usage_option: bool = False
    """Streams support ``stream_options.include_usage``."""
    deployment_scoped: bool = False
    """Azure OpenAI addresses it per deployment (``/openai/deployments/{model}/...``)."""
    json_too: bool = False
    """A multipart route that also takes a JSON body (``Content-Type: application/json``); that body must name its
    model (the upstream's default for it may not be the multipart default the gateway would check and meter)."""
    _parts: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parts", tuple(self.template.split("/")))

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(p[1:-1] for p in self._parts if p.startswith("{"))

    def match(self, path: str) -> dict[str, str] | None:
        parts = path.split("/")
        if len(parts) != len(self._parts):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self._parts, parts, strict=True):
            if want.startswith("{"):
                if not is_segment(got):
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params

    def upstream(self, params: Mapping[str, str], query_string: bytes = b"") -> UpstreamPath:
        """The upstream request's path (below the upstream's ``/v1``) and query, from this route's template."""
        path = self.template.removeprefix("/v1")
        for name in self.params:
            path = path.replace("{" + name + "}", segment(params[name]))
        return UpstreamPath(path, self.query_of(query_string), self.deployment_scoped)

    def checked_query(self, query_string: bytes) -> list[tuple[str, str]]:
        """The query parameters this route reads or forwards, one value each, checked; 400 in OpenAI's shape for
        a repeated one (``after=x&after=y``: the gateway and the upstream might read different ones), a value
        outside its grammar, or more parameters than any OpenAI route takes. Others are dropped unread."""
        if not query_string:
            return []
        try:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, max_num_fields=_MAX_QUERY_PARAMS)
        except ValueError:
            raise BadRequest(f"Too many query parameters: at most {_MAX_QUERY_PARAMS}.", code="invalid_query") from None
        kept: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name, value in pairs:
            if name not in self.query:
                continue
            if name in seen and name not in _REPEATABLE:
                raise BadRequest(
                    f"The query parameter '{name}' is given more than once; give it once.",
                    param=name,
                    code="duplicate_parameter",
                )
            seen.add(name)
            grammar, form = _QUERY_GRAMMAR.get(name, _QUERY_VALUE)
            if value and grammar.fullmatch(value) is None:
                raise BadRequest(
                    f"Invalid '{name}': {_shown(value)}. It must be {form}.", param=name, code="invalid_query"
                )
            kept.append((name, value))
        return kept

    def query_of(self, query_string: bytes) -> str:
        """The query forwarded upstream: built from ``checked_query``, never the caller's string."""
        if not self.query or not query_string:
            return ""
        return urlencode(self.checked_query(query_string))


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


# What a forwarded query value may be. Cursors (``after``/``before``) are object ids: one path segment's grammar
# and at most 128 characters (OpenAI's ids are under 64). Integers are digits. Every other value OpenAI defines
# (``include[]``, ``order``, ``filter``, ``purpose``, a chat list's ``model``) is a short token.
_CURSOR = (
    re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:-]{0,127}"),
    "an object id (letters, digits, '_', '-', '.' and ':', at most 128 characters)",
)
_INTEGER = (re.compile(r"[0-9]{1,10}"), "an integer")
_QUERY_VALUE = (re.compile(r"[A-Za-z0-9_.:/-]{1,256}"), "letters, digits, '_', '-', '.', ':' and '/'")
_QUERY_GRAMMAR = {
    "after": _CURSOR,
    "before": _CURSOR,
    "limit": _INTEGER,
    "starting_after": _INTEGER,
    "order": (re.compile(r"asc|desc"), "'asc' or 'desc'"),
}
_REPEATABLE = frozenset({"include", "include[]"})
"""Parameters OpenAI defines as lists, sent repeated (``include[]=a&include[]=b``)."""


_INCLUDE = frozenset({"include", "include[]"})
CREATE_ROUTES: dict[str, Route] = {
    r.template: r
    for r in (
        Route("POST", "/v1/chat/completions", "chat", "json", usage_option=True, deployment_scoped=True),
        Route("POST", "/v1/completions", "text_completion", "json", usage_option=True, deployment_scoped=True),
        Route("POST", "/v1/embeddings", "embeddings", "json", deployment_scoped=True),
        Route("POST", "/v1/responses", "responses", "json"),
        # Counts a request's input tokens: no model work, nothing billed (the router says so).
        Route("POST", "/v1/responses/input_tokens", "responses", "json"),
        Route("POST", "/v1/responses/compact", "responses", "json"),
        Route("POST", "/v1/moderations", "moderations", "json", default_model="omni-moderation-latest"),
        Route(
            "POST",
            "/v1/images/generations",
            "image_generation",
            "json",
            default_model="dall-e-2",
            deployment_scoped=True,
        ),
        # Multipart like transcriptions; a form without ``model`` is sent upstream with the default one added. GPT
        # image models also take a JSON body naming the images by file id or URL.
        Route(
            "POST",
            "/v1/images/edits",
            "image_edit",
            "multipart",
            default_model="dall-e-2",
            deployment_scoped=True,
            json_too=True,
        ),
        Route(
            "POST",
            "/v1/images/variations",
            "image_variation",
            "multipart",
            default_model="dall-e-2",
            deployment_scoped=True,
        ),
        Route("POST", "/v1/audio/speech", "speech", "json", deployment_scoped=True),
        Route("POST", "/v1/audio/transcriptions", "transcription", "multipart", deployment_scoped=True),
        Route("POST", "/v1/audio/translations", "translation", "multipart", deployment_scoped=True),
    )
}
"""POST routes that create model work, by path (no parameters)."""
COUNT_INPUT_TOKENS = CREATE_ROUTES["/v1/responses/input_tokens"]

LIST_MODELS = Route("GET", "/v1/models", "models")
RETRIEVE_MODEL = Route("GET", "/v1/models/{model}", "models")
RETRIEVE_RESPONSE = Route(
    "GET",
    "/v1/responses/{response_id}",
    "responses",
    query=_INCLUDE | {"stream", "starting_after", "include_obfuscation"},
)
STORED_RESPONSE_ROUTES = (
    RETRIEVE_RESPONSE,
    Route("DELETE", "/v1/responses/{response_id}", "responses"),
    Route(
        "GET",
        "/v1/responses/{response_id}/input_items",
        "responses",
        query=_INCLUDE | {"after", "before", "limit", "order"},
    ),
    Route("POST", "/v1/responses/{response_id}/cancel", "responses"),
)

# Files, uploads and batches (proxy/files.py, proxy/batches.py). Lists are answered from the gateway's own index and
# never reach the upstream; their query parameters are read by the gateway only.
LIST_FILES = Route("GET", "/v1/files", "files", query=frozenset({"purpose", "limit", "after", "order"}))
LIST_BATCHES = Route("GET", "/v1/batches", "batch", query=frozenset({"after", "limit"}))
RETRIEVE_FILE = Route("GET", "/v1/files/{file_id}", "files")
FILE_CONTENT = Route("GET", "/v1/files/{file_id}/content", "files")
RETRIEVE_BATCH = Route("GET", "/v1/batches/{batch_id}", "batch")
_FILE_ROUTES = (
    Route("POST", "/v1/files", "files", "multipart"),
    LIST_FILES,
    RETRIEVE_FILE,
    Route("DELETE", "/v1/files/{file_id}", "files"),
    FILE_CONTENT,
    Route("POST", "/v1/uploads", "uploads", "json"),
    Route("POST", "/v1/uploads/{upload_id}/parts", "uploads", "multipart"),
    Route("POST", "/v1/uploads/{upload_id}/complete", "uploads", "json"),
    Route("POST", "/v1/uploads/{upload_id}/cancel", "uploads"),
    Route("POST", "/v1/batches", "batch", "json"),
    LIST_BATCHES,
    RETRIEVE_BATCH,
    Route("POST", "/v1/batches/{batch_id}/cancel", "batch"),
)
# Stored chat completions and conversations (proxy/conversations.py). The chat completions list is answered from the
# index; conversations have no list in OpenAI's API. An item is reached only through its conversation.
LIST_CHAT_COMPLETIONS = Route(
    "GET", "/v1/chat/completions", "chat", query=frozenset({"model", "after", "limit", "order"})
)
RETRIEVE_CHAT_COMPLETION = Route("GET", "/v1/chat/completions/{completion_id}", "chat")
RETRIEVE_CONVERSATION_ITEM = Route(
    "GET", "/v1/conversations/{conversation_id}/items/{item_id}", "conversations", query=_INCLUDE
)
_PAGE = frozenset({"after", "limit", "order"})
CONVERSATION_ROUTES = (
    LIST_CHAT_COMPLETIONS,
    RETRIEVE_CHAT_COMPLETION,
    Route("POST", "/v1/chat/completions/{completion_id}", "chat", "json"),
    Route("DELETE", "/v1/chat/completions/{completion_id}", "chat"),
    Route("GET", "/v1/chat/completions/{completion_id}/messages", "chat", query=_PAGE),
    Route("POST", "/v1/conversations", "conversations", "json"),
    Route("GET", "/v1/conversations/{conversation_id}", "conversations"),
    Route("POST", "/v1/conversations/{conversation_id}", "conversations", "json"),
    Route("DELETE", "/v1/conversations/{conversation_id}", "conversations"),
    Route("POST", "/v1/conversations/{conversation_id}/items", "conversations", "json", query=_INCLUDE),
    Route("GET", "/v1/conversations/{conversation_id}/items", "conversations", query=_PAGE | _INCLUDE),
    RETRIEVE_CONVERSATION_ITEM,
    Route("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}", "conversations"),
)
# Vector stores (proxy/vector_stores.py): the store list is the gateway's index; a store's own lists (its files, a
# file batch's files) are the upstream's, reached only through a store the caller owns.
_VS_PAGE = frozenset({"after", "before", "limit", "order"})
LIST_VECTOR_STORES = Route("GET", "/v1/vector_stores", "vector_stores", query=_VS_PAGE)
RETRIEVE_VECTOR_STORE = Route("GET", "/v1/vector_stores/{vector_store_id}", "vector_stores")
VECTOR_STORE_ROUTES = (
    Route("POST", "/v1/vector_stores", "vector_stores", "json"),
    LIST_VECTOR_STORES,
    RETRIEVE_VECTOR_STORE,
    Route("POST", "/v1/vector_stores/{vector_store_id}", "vector_stores", "json"),
    Route("DELETE", "/v1/vector_stores/{vector_store_id}", "vector_stores"),
    Route("POST", "/v1/vector_stores/{vector_store_id}/search", "vector_stores", "json"),
    Route("POST", "/v1/vector_stores/{vector_store_id}/files", "vector_stores", "json"),
    Route("GET", "/v1/vector_stores/{vector_store_id}/files", "vector_stores", query=_VS_PAGE | {"filter"}),
    Route("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}", "vector_stores"),
    Route("POST", "/v1/vector_stores/{vector_store_id}/files/{file_id}", "vector_stores", "json"),
    Route("DELETE", "/v1/vector_stores/{vector_store_id}/files/{file_id}", "vector_stores"),
    Route("GET", "/v1/vector_stores/{vector_store_id}/files/{file_id}/content", "vector_stores"),
    Route("POST", "/v1/vector_stores/{vector_store_id}/file_batches", "vector_stores", "json"),
    Route("GET", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}", "vector_stores"),
    Route("POST", "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel", "vector_stores"),
    Route(
        "GET",
        "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
        "vector_stores",
        query=_VS_PAGE | {"filter"},
    ),
)
OBJECT_ROUTES: tuple[Route, ...] = (*_FILE_ROUTES, *CONVERSATION_ROUTES, *VECTOR_STORE_ROUTES)
OBJECT_PREFIXES = (
    "/v1/files",
    "/v1/uploads",
    "/v1/batches",
    "/v1/chat/completions",
    "/v1/conversations",
    "/v1/vector_stores",
)

ALL_ROUTES: tuple[Route, ...] = (
    *CREATE_ROUTES.values(),
    LIST_MODELS,
    RETRIEVE_MODEL,
    *STORED_RESPONSE_ROUTES,
    *OBJECT_ROUTES,
)


def match_stored_response(method: str, path: str) -> tuple[Route, str] | None:
    """The stored-response route and response id of a request, or None."""
    for route in STORED_RESPONSE_ROUTES:
        if route.method == method:
            params = route.match(path)
            if params is not None:
                return route, params["response_id"]
    return None


def match_object_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The files, uploads, batches or vector stores route of a request and its parameters, or None."""
    for route in OBJECT_ROUTES:
        if route.method == method:
            params = route.match(path)
            if params is not None:
                return route, params
    return None
