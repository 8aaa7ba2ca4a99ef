"""Dispatch of the OpenAI-compatible endpoints, as a raw ASGI layer in front of FastAPI.

Requests are matched against the fixed route templates of ``routes.py``; paths that match none fall through to the
FastAPI app (admin, usage, docs, ops, and OpenAI-shaped 404s).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Principal
from tenantgate.platform.context import SCOPE_CONTEXT, SCOPE_ROUTE, RequestContext
from tenantgate.platform.errors import BadRequest, GatewayError, send_error
from tenantgate.platform.proxy import batches, conversations, files, models, prompts, stored, vector_stores
from tenantgate.platform.proxy.audio_length import upload_seconds
from tenantgate.platform.proxy.forward import ForwardPolicy, forward, tenant_keys
from tenantgate.platform.proxy.http import ClientDisconnected, parse_json_object, read_body
from tenantgate.platform.proxy.multipart import MultipartUpload, read_upload, with_field
from tenantgate.platform.proxy.references import Reference, check_admission_fields, check_model_name, inspect_body
from tenantgate.platform.proxy.request_body import JsonBody
from tenantgate.platform.proxy.routes import (
    COUNT_INPUT_TOKENS,
    CREATE_ROUTES,
    LIST_MODELS,
    OBJECT_PREFIXES,
    RETRIEVE_MODEL,
    Route,
    match_object_route,
    match_stored_response,
)
from tenantgate.platform.proxy.services import ProxyServices
from tenantgate.platform.upstream.registry import Target

_OBJECT_SERVERS = {
    "batch": batches.serve,
    "chat": conversations.serve,
    "conversations": conversations.serve,
    "vector_stores": vector_stores.serve,
}


class ProxyRouter:
    def __init__(self, app: ASGIApp, services: ProxyServices) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        route = CREATE_ROUTES.get(path) if method == "POST" else None
        response_id = ""
        params: dict[str, str] | None = None
        if route is not None:
            pass
        elif method == "GET" and path == "/v1/models":
            route = LIST_MODELS
        elif method == "GET" and path.startswith("/v1/models/"):
            route = RETRIEVE_MODEL  # models.serve checks the name; a declared model may contain "/"
        elif path.startswith("/v1/responses/") and (stored_route := match_stored_response(method, path)):
            route, response_id = stored_route
        elif path.startswith(OBJECT_PREFIXES) and (object_route := match_object_route(method, path)):
            route, params = object_route
        else:
            await self.app(scope, receive, send)
            return
        scope[SCOPE_ROUTE] = route.template  # what telemetry names this request by
        ctx: RequestContext = scope[SCOPE_CONTEXT]
        # The template, not the path: ids stay out of usage events and metrics.
        model_work = route.body != "none" and params is None and route is not COUNT_INPUT_TOKENS
        exchange = Exchange(ctx=ctx, operation=route.operation, path=route.template, model_work=model_work)
        try:
            # Query parameters: each once and within its grammar, before any work (what is checked is what goes on).
            route.checked_query(scope["query_string"])
            if params is not None:
                serve = _OBJECT_SERVERS.get(route.operation, files.serve)
                await serve(self.services, exchange, route, params, scope, receive, send)
            elif route.body != "none":
                await self.create(exchange, route, scope, receive, send)
            elif route.operation == "models":
                await models.serve(self.services, exchange, route, scope, receive, send)
            else:
                await stored.serve(self.services, exchange, route, response_id, scope, receive, send)
        except GatewayError as error:
            exchange.status = exchange.status if exchange.status >= 400 else error.status
            exchange.error_type = exchange.error_type or error.code or error.type
            error.headers.update((k.decode(), v.decode()) for k, v in exchange.response_headers)
            if error.status == 429 and self.services.pacer.delay > 0:
                paced = time.perf_counter()
                await self.services.pacer.pace(ctx.principal.key_id, exchange.started, _retry_after(error))
                exchange.waited += time.perf_counter() - paced  # back-pressure: waiting, not the gateway's work
            await send_error(send, error, ctx.request_id)
        except ClientDisconnected:
            exchange.client_disconnected = True
        finally:
            exchange.finished_at = time.perf_counter()
            self.services.hooks.finish(exchange)

    async def create(self, exchange: Exchange, endpoint: Route, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        # A key or tenant known to be over its RPM or RPD is refused before its body is read or parsed. The unread
        # body is discarded by the server's parser after the answer, so the connection stays usable (keep-alive).
        services.limiter.refuse_known(exchange)
        # Every model request holds a work slot until it has been answered (platform/workslots.py). One that must
        # wait for it reads its JSON body first (bytes only, parsed once it has its slot), so that ``receive`` is
        # free to notice a client that gives up waiting; an upload waits before its body, which streams upstream.
        slots = services.work_slots
        took = slots.take(exchange)
        try:
            raw: bytes | None = None
            if endpoint.body == "json" or (endpoint.json_too and _is_json(scope)):
                raw = await read_body(scope, receive, services.settings.max_request_body_bytes)
                if not took:
                    await slots.wait(exchange, receive)
            elif not took:
                await slots.wait(exchange)
            await self._create(exchange, endpoint, raw, scope, receive, send)
        finally:
            slots.release(exchange)

    async def _create(
        self, exchange: Exchange, endpoint: Route, raw: bytes | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        services = self.services
        slots = services.work_slots
        json_body: JsonBody | None = None
        named: list[Reference] = []
        if raw is not None:
            payload = parse_json_object(raw)
            named = inspect_body(endpoint.template, raw, payload)
            model = payload.get("model", None if endpoint.body == "multipart" else endpoint.default_model)
            json_body = JsonBody(raw, payload, model if isinstance(model, str) else "")
            exchange.payload = payload
            exchange.body_size = len(raw)
            check_admission_fields(payload, endpoint.template)
            exchange.stream = payload.get("stream") is True
        else:
            upload = await read_upload(scope, receive, services.settings.max_request_body_bytes)
            model = upload.model if upload.model is not None else endpoint.default_model
            exchange.payload = _priced_fields(upload) if exchange.path.startswith("/v1/images/") else None
            exchange.answer_format = upload.form.fields.get("response_format")
            if exchange.path.startswith("/v1/audio/"):
                exchange.upload_seconds = upload_seconds(upload)
            exchange.body_size = len(upload.head) if upload.complete else _declared_length(scope)
        if json_body is not None and model is None and _model_optional(endpoint, json_body.payload):
            targets = _unnamed_model_targets(services, exchange.ctx.principal)
        elif not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", param="model")
        else:
            check_model_name(model)
            exchange.model = model
            targets = models.allowed_targets(services, exchange.ctx.principal, model, endpoint)
        if named:
            named = prompts.unchecked(named, exchange.ctx.principal, services.settings.platform_prompts, targets)
        if named:
            targets = await stored.check_references(services, exchange, named, targets)
        strip_usage = False
        if json_body is not None and exchange.stream and endpoint.usage_option:
            strip_usage = json_body.ask_for_stream_usage()
        if json_body is not None:
            body_for = json_body.for_target
            replayable = True
        else:
            if upload.model is None:
                body_for = _once(with_field(upload, "model", str(model)))
            else:
                body_for = _once(upload.head if upload.complete else upload.rest())
            replayable = upload.complete
        slots.park(exchange)  # the limiter may ask Redis
        await services.hooks.admit(exchange)
        slots.unpark(exchange)
        # The slot is parked again as each attempt is sent: an upstream still thinking after
        # work_slot_upstream_seconds is not the worker's work, so its slot passes on to whoever waits, and slow model
        # calls never cap how many a worker has at its upstreams.
        await forward(
            exchange,
            services.http,
            services.hooks,
            targets,
            scope,
            receive,
            send,
            method="POST",
            path=endpoint.upstream({}),
            body_for=body_for,
            policy=ForwardPolicy(
                services.settings.upstream_max_retry_wait_seconds,
                replayable,
                strip_usage,
                services.unfinished_streams,
                park=slots.park,
            ),
            tenant_keys=tenant_keys(exchange),
        )


def _retry_after(error: GatewayError) -> float | None:
    """The wait a refusal asks for, in seconds, if it names one."""
    try:
        if "retry-after-ms" in error.headers:
            return int(error.headers["retry-after-ms"]) / 1000
        if "retry-after" in error.headers:
            return float(error.headers["retry-after"])
    except ValueError:
        return None
    return None


def _model_optional(endpoint: Route, payload: dict[str, Any]) -> bool:
    """OpenAI takes a Responses request without ``model`` when it names a stored prompt (whose model the upstream
    knows), and a token count without one at all."""
    if endpoint is COUNT_INPUT_TOKENS:
        return True
    return endpoint.template == "/v1/responses" and isinstance(payload.get("prompt"), dict)


def _unnamed_model_targets(services: ProxyServices, principal: Principal) -> tuple[Target, ...]:
    """Where a request naming no model goes: the default upstream, for keys that may use every model. A key
    limited to some models must name one, since the model is known only from the answer, after the work is done
    (it is then metered under the model the answer names)."""
    if principal.allowed_models is not None:
        raise BadRequest(
            "This API key may use only some models, so the request must name its model (a stored prompt's model is "
            "known only once it has run).",
            param="model",
            code="model_required",
        )
    default = services.routing.default
    if default is None:
        raise BadRequest("This gateway routes requests by model: name the model.", param="model", code="model_required")
    return (Target(principal.own_upstreams.get(default.name, default), ""),)


_IMAGE_OPTIONS = ("size", "quality")


def _priced_fields(upload: MultipartUpload) -> dict[str, Any]:
    """What an image upload's form says about its price (size, quality), read like a JSON body's fields; the
    number of images is counted from the answer."""
    return {name: upload.form.fields[name] for name in _IMAGE_OPTIONS if name in upload.form.fields}


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


def _declared_length(scope: Scope) -> int:
    """The Content-Length of a request (what a streamed upload will be; the server holds the body to it), or 0
    when it has none (chunked)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _once(body: object) -> Any:
    return lambda _target: body
