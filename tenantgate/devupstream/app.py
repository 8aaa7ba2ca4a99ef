"""The dev upstream's ASGI app: authentication, routing and fault injection.

Raw ASGI, because it must cost little CPU when it stands in for OpenAI in benchmarks. Paths are accepted under
``/v1``, ``/openai/v1`` and Azure's ``/openai/deployments/<deployment>`` (whose deployment is the default model), so
one server can stand in for OpenAI, Azure OpenAI and other OpenAI-compatible servers. ``/dev/...`` paths are the dev
upstream's own (image urls, fault counters) and need no key.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from tenantgate.devupstream import audio, catalog, chat, images
from tenantgate.devupstream.batches import Batches
from tenantgate.devupstream.conversations import Conversations
from tenantgate.devupstream.faults import (
    NO_FAULTS,
    FaultCounters,
    FaultHeaderError,
    RateWindow,
    fault_headers,
    fault_status_error,
)
from tenantgate.devupstream.files import FileStore
from tenantgate.devupstream.response_store import ResponseStore
from tenantgate.devupstream.responses import Responses
from tenantgate.devupstream.stored_chat import ChatStore
from tenantgate.devupstream.vector_stores import VectorStores
from tenantgate.devupstream.wire import Abort, ApiError, Call

MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth "
    "(i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the "
    "API from your browser and are prompted for a username. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_WRONG_KEY = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library "
    "correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble "
    "figuring out how to fix this, please contact us through our help center at help.openai.com.)"
)
_MODEL_RE = re.compile(r"/models/(?P<model>[^/]+)")
_RESPONSE_RE = re.compile(r"/responses/(?P<id>[^/]+)(?:/(?P<action>input_items|cancel))?")
_DEV_IMAGE_RE = re.compile(r"/dev/images/(?P<id>[\w-]+)\.png")
_DEV_ATTEMPTS_RE = re.compile(r"/dev/attempts/(?P<key>.+)")
_FILE_RE = re.compile(r"/files/(?P<id>[^/]+)(?P<content>/content)?")
_UPLOAD_RE = re.compile(r"/uploads/(?P<id>[^/]+)/(?P<action>parts|complete|cancel)")
_BATCH_RE = re.compile(r"/batches/(?P<id>[^/]+)(?P<cancel>/cancel)?")
_CHAT_RE = re.compile(r"/chat/completions/(?P<id>[^/]+)(?P<messages>/messages)?")
_CONVERSATION_RE = re.compile(r"/conversations/(?P<id>[^/]+)(?:/items(?:/(?P<item>[^/]+))?(?P<items>))?")
_VECTOR_STORE_RE = re.compile(
    r"/vector_stores/(?P<id>[^/]+)(?:/(?P<action>search|files|file_batches)(?:/(?P<sub>[^/]+)(?:/(?P<tail>content|cancel|files))?)?)?"
)

Endpoint = Callable[[Call], Awaitable[None]]
JsonEndpoint = Callable[[Call, dict[str, Any]], Awaitable[None]]


def _split(path: str) -> tuple[str, str | None]:
    """The endpoint path without its API prefix, and the Azure deployment it names (if any)."""
    if path.startswith("/openai/deployments/"):
        deployment, _, rest = path[len("/openai/deployments/") :].partition("/")
        return "/" + rest, deployment
    for prefix in ("/openai/v1", "/v1"):
        if path.startswith(prefix + "/"):
            return path[len(prefix) :], None
    return path, None


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def _content_type(scope: Any) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower()
    return b""


async def _read_json(call: Call) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await call.receive()
        if message["type"] == "http.disconnect":
            raise Abort
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_JSON_BODY_BYTES:
            raise ApiError(413, f"Request body exceeds the limit of {MAX_JSON_BODY_BYTES} bytes.")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    try:
        payload = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise ApiError(400, _BAD_JSON) from None
    if not isinstance(payload, dict):
        raise ApiError(400, _BAD_JSON)
    return payload


async def _with_json(call: Call, endpoint: JsonEndpoint) -> None:
    await endpoint(call, await _read_json(call))


class DevUpstream:
    """An OpenAI-compatible ASGI app with canned answers.

    ``token_delay_ms`` paces generation (per token, audio chunk or image); ``api_key``, when set, is required as
    ``Authorization: Bearer`` or Azure's ``api-key``; ``name`` is sent as ``x-dev-upstream`` on every answer and
    selects which dev upstreams apply the faults of ``x-dev-fail-only``; a batch takes ``batch_seconds`` to complete.
    """

    def __init__(
        self,
        token_delay_ms: float = 0.0,
        api_key: str | None = None,
        *,
        name: str = "dev",
        max_stored_responses: int = 10_000,
        batch_seconds: float = 3.0,
    ) -> None:
        self.token_delay = token_delay_ms / 1000
        self.api_key = api_key.encode() if api_key is not None else None
        self.name = name
        self.counters = FaultCounters(name)
        self.window = RateWindow()
        self.images = images.ImageStore()
        self.chat_store = ChatStore(max_stored_responses)
        self.conversations = Conversations()
        self.responses = Responses(ResponseStore(max_stored_responses), self.conversations)
        self._json_endpoints: dict[str, JsonEndpoint] = {
            "/chat/completions": lambda call, payload: chat.chat_completions(call, payload, self.chat_store),
            "/completions": chat.completions,
            "/embeddings": catalog.embeddings,
            "/moderations": catalog.moderations,
            "/responses": self.responses.create,
            "/responses/input_tokens": self.responses.input_tokens,
            "/responses/compact": self.responses.compact,
            "/images/generations": self._image_generations,
            "/audio/speech": audio.speech,
        }
        self.files = FileStore()
        self.batches = Batches(self.files, self._json_endpoints, batch_seconds)
        self.vector_stores = VectorStores(self.files)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        call = Call(scope, receive, send, NO_FAULTS, self.token_delay, self.window, self.name.encode())
        try:
            await self._answer(call)
        except ApiError as exc:
            if not call.responded:
                await call.error(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)
        except Abort:
            # Either the answer is complete (an in-stream error), or the server closes the connection mid-answer.
            return
        finally:
            call.close()

    async def _answer(self, call: Call) -> None:
        scope = call.scope
        method, full_path = scope["method"], scope["path"]
        path, deployment = _split(full_path)
        if path.startswith("/dev/"):
            await self._dev_tools(call, method, path)
            return
        endpoints = self._endpoints(path, deployment)
        endpoint = endpoints.get(method)
        if endpoint is None:
            if endpoints:
                error = ApiError(405, f"Invalid method for URL ({method} {full_path})")
                error.headers = [(b"allow", ", ".join(endpoints).encode())]
                raise error
            raise ApiError(404, f"Invalid URL ({method} {full_path})")
        self._authenticate(scope)
        try:
            faults = call.faults = self.counters.faults_for(scope)
        except FaultHeaderError as exc:
            raise ApiError(400, str(exc)) from None
        if faults.token_delay_ms is not None:
            call.token_delay = faults.token_delay_ms / 1000
        if faults.first_byte_delay_ms:
            await asyncio.sleep(faults.first_byte_delay_ms / 1000)
        if faults.fail_status is not None:
            message, type_, code = fault_status_error(faults.fail_status)
            await call.error(faults.fail_status, message, type_, code, extra=fault_headers(faults))
            return
        await endpoint(call)

    def _endpoints(self, path: str, deployment: str | None) -> dict[str, Endpoint]:
        """The endpoints at ``path``, by method."""
        json_endpoint = self._json_endpoints.get(path)
        if json_endpoint is not None:

            async def with_json(call: Call) -> None:
                payload = await _read_json(call)
                if deployment:
                    payload.setdefault("model", deployment)
                await json_endpoint(call, payload)

            if path == "/chat/completions":
                return {"POST": with_json, "GET": lambda call: self.chat_store.list(call, _query(call.scope))}
            return {"POST": with_json}
        objects = self._object_endpoints(path) or self._conversation_endpoints(path)
        if objects:
            return objects
        if path in ("/images/edits", "/images/variations"):
            variation, store = path.endswith("variations"), self.images

            async def edit(call: Call) -> None:
                if not variation and _content_type(call.scope) == b"application/json":
                    await images.json_edits(call, await _read_json(call))
                else:
                    await images.edits(call, store, variation=variation)

            return {"POST": edit}
        if path in ("/audio/transcriptions", "/audio/translations"):
            task = "transcribe" if path.endswith("transcriptions") else "translate"
            return {"POST": lambda call: audio.transcribe(call, task)}
        if path == "/models":
            return {"GET": catalog.list_models}
        if match := _MODEL_RE.fullmatch(path):
            model = match["model"]
            return {"GET": lambda call: catalog.get_model(call, model)}
        if match := _RESPONSE_RE.fullmatch(path):
            response_id, action, responses = match["id"], match["action"], self.responses
            if action == "input_items":
                return {"GET": lambda call: responses.list_input_items(call, response_id, _query(call.scope))}
            if action == "cancel":
                return {"POST": lambda call: responses.cancel(call, response_id)}
            return {
                "GET": lambda call: responses.retrieve(call, response_id),
                "DELETE": lambda call: responses.delete(call, response_id),
            }
        return {}

    def _object_endpoints(self, path: str) -> dict[str, Endpoint]:
        """Files, uploads and batches (files.py, batches.py)."""
        files, batches = self.files, self.batches
        if path == "/files":
            return {"POST": files.create, "GET": lambda call: files.list(call, _query(call.scope))}
        if match := _FILE_RE.fullmatch(path):
            file_id = match["id"]
            if match["content"]:
                return {"GET": lambda call: files.content(call, file_id)}
            return {
                "GET": lambda call: files.retrieve(call, file_id),
                "DELETE": lambda call: files.delete(call, file_id),
            }
        if path == "/uploads":
            return {"POST": lambda call: _with_json(call, files.create_upload)}
        if match := _UPLOAD_RE.fullmatch(path):
            upload_id, action = match["id"], match["action"]
            if action == "parts":
                return {"POST": lambda call: files.add_part(call, upload_id)}
            if action == "complete":
                return {"POST": lambda call: _with_json(call, lambda c, p: files.complete(c, upload_id, p))}
            return {"POST": lambda call: files.cancel_upload(call, upload_id)}
        if path == "/batches":
            return {"POST": lambda call: _with_json(call, batches.create), "GET": batches.list}
        if match := _BATCH_RE.fullmatch(path):
            batch_id = match["id"]
            if match["cancel"]:
                return {"POST": lambda call: batches.cancel(call, batch_id)}
            return {"GET": lambda call: batches.retrieve(call, batch_id)}
        return self._vector_store_endpoints(path)

    def _vector_store_endpoints(self, path: str) -> dict[str, Endpoint]:
        """Vector stores, their files and file batches, search (vector_stores.py)."""
        stores = self.vector_stores
        if path == "/vector_stores":
            return {
                "POST": lambda call: _with_json(call, stores.create),
                "GET": lambda call: stores.list(call, _query(call.scope)),
            }
        match = _VECTOR_STORE_RE.fullmatch(path)
        if match is None:
            return {}
        store_id, action, sub, tail = match["id"], match["action"], match["sub"], match["tail"]
        if action is None:
            return {
                "GET": lambda call: stores.retrieve(call, store_id),
                "POST": lambda call: _with_json(call, lambda c, p: stores.modify(c, store_id, p)),
                "DELETE": lambda call: stores.delete(call, store_id),
            }
        if action == "search":
            return {} if sub else {"POST": lambda call: _with_json(call, lambda c, p: stores.search(c, store_id, p))}
        if action == "files" and sub is None:
            return {
                "POST": lambda call: _with_json(call, lambda c, p: stores.add_file(c, store_id, p)),
                "GET": lambda call: stores.list_files(call, store_id, _query(call.scope)),
            }
        if action == "files" and tail is None:
            return {
                "GET": lambda call: stores.retrieve_file(call, store_id, sub),
                "POST": lambda call: _with_json(call, lambda c, p: stores.update_file(c, store_id, sub, p)),
                "DELETE": lambda call: stores.delete_file(call, store_id, sub),
            }
        if action == "files" and tail == "content":
            return {"GET": lambda call: stores.file_content(call, store_id, sub)}
        if action == "file_batches" and sub is None:
            return {"POST": lambda call: _with_json(call, lambda c, p: stores.create_batch(c, store_id, p))}
        if action == "file_batches" and tail is None:
            return {"GET": lambda call: stores.retrieve_batch(call, store_id, sub)}
        if action == "file_batches" and tail == "cancel":
            return {"POST": lambda call: stores.cancel_batch(call, store_id, sub)}
        if action == "file_batches" and tail == "files":
            return {"GET": lambda call: stores.list_batch_files(call, store_id, sub, _query(call.scope))}
        return {}

    def _conversation_endpoints(self, path: str) -> dict[str, Endpoint]:
        """Stored chat completions and conversations (stored_chat.py, conversations.py)."""
        store, conversations = self.chat_store, self.conversations
        if match := _CHAT_RE.fullmatch(path):
            completion_id = match["id"]
            if match["messages"]:
                return {"GET": lambda call: store.messages(call, completion_id, _query(call.scope))}
            return {
                "GET": lambda call: store.retrieve(call, completion_id),
                "POST": lambda call: _with_json(call, lambda c, p: store.update(c, completion_id, p)),
                "DELETE": lambda call: store.delete(call, completion_id),
            }
        if path == "/conversations":
            return {"POST": lambda call: _with_json(call, conversations.create)}
        if match := _CONVERSATION_RE.fullmatch(path):
            conversation_id, item_id = match["id"], match["item"]
            if item_id is not None:
                return {
                    "GET": lambda call: conversations.retrieve_item(call, conversation_id, item_id),
                    "DELETE": lambda call: conversations.delete_item(call, conversation_id, item_id),
                }
            if match["items"] is not None:
                return {
                    "GET": lambda call: conversations.list_items(call, conversation_id, _query(call.scope)),
                    "POST": lambda call: _with_json(call, lambda c, p: conversations.add_items(c, conversation_id, p)),
                }
            return {
                "GET": lambda call: conversations.retrieve(call, conversation_id),
                "POST": lambda call: _with_json(call, lambda c, p: conversations.update(c, conversation_id, p)),
                "DELETE": lambda call: conversations.delete(call, conversation_id),
            }
        return {}

    def _authenticate(self, scope: Scope) -> None:
        if self.api_key is None:
            return
        presented: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented.append(value[7:].strip())
            elif name == b"api-key":
                presented.append(value.strip())
        if not any(presented):
            raise ApiError(401, _MISSING_KEY)
        if not any(hmac.compare_digest(key, self.api_key) for key in presented):
            raise ApiError(401, _WRONG_KEY, code="invalid_api_key")

    async def _image_generations(self, call: Call, payload: dict[str, Any]) -> None:
        await images.generations(call, payload, self.images)

    async def _dev_tools(self, call: Call, method: str, path: str) -> None:
        if method == "GET" and (match := _DEV_IMAGE_RE.fullmatch(path)):
            png = self.images.get(match["id"])
            if png is None:
                raise ApiError(404, "This image has expired or never existed.")
            await call.body(200, b"image/png", png)
            return
        if method == "GET" and (match := _DEV_ATTEMPTS_RE.fullmatch(path)):
            key = match["key"]
            await call.json(200, {"key": key, "attempts": self.counters.attempts(key)})
            return
        raise ApiError(404, f"Invalid URL ({method} {call.scope['path']})")
