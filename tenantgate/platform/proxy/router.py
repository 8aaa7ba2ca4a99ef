"""Dispatch of the OpenAI-compatible endpoints, as a raw ASGI layer in front of FastAPI.

Paths it does not serve fall through to the FastAPI app (admin, usage, docs, ops, and OpenAI-shaped 404s).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_CONTEXT, SCOPE_ROUTE, RequestContext
from tenantgate.platform.errors import BadRequest, GatewayError, NotFound, send_error
from tenantgate.platform.proxy.exchange import Exchange
from tenantgate.platform.proxy.forward import forward
from tenantgate.platform.proxy.http import ClientDisconnected, parse_json_object, read_body
from tenantgate.platform.runtime import Runtime

Handler = Callable[[Exchange, Scope, Receive, Send], Awaitable[None]]

# Endpoints whose streams support ``stream_options.include_usage``.
_USAGE_OPTION_OPERATIONS = frozenset({"chat", "text_completion"})


class ProxyRouter:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.routes: dict[tuple[str, str], tuple[str, Handler]] = {
            ("POST", "/v1/chat/completions"): ("chat", self.json_endpoint),
            ("POST", "/v1/embeddings"): ("embeddings", self.json_endpoint),
            ("GET", "/v1/models"): ("models", self.list_models),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        route = self.routes.get((scope["method"], path))
        template = path
        if route is None and scope["method"] == "GET" and path.startswith("/v1/models/"):
            route = ("models", self.retrieve_model)
            template = "/v1/models/{model}"
        if route is None:
            await self.app(scope, receive, send)
            return
        scope[SCOPE_ROUTE] = template
        operation, handler = route
        ctx: RequestContext = scope[SCOPE_CONTEXT]
        exchange = Exchange(ctx=ctx, operation=operation, path=path)
        hooks = self.runtime.hooks
        try:
            await handler(exchange, scope, receive, send)
        except GatewayError as error:
            exchange.status = exchange.status if exchange.status >= 400 else error.status
            exchange.error_type = exchange.error_type or error.code or error.type
            await send_error(send, error, ctx.request_id)
        except ClientDisconnected:
            exchange.client_disconnected = True
        finally:
            exchange.finished_at = time.perf_counter()
            hooks.finish(exchange)

    async def json_endpoint(self, exchange: Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(scope, receive, self.runtime.settings.max_request_body_bytes)
        payload = parse_json_object(body)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", param="model")
        if not exchange.ctx.principal.may_use(model):
            raise _model_not_found(model)
        exchange.model = model
        exchange.payload = payload
        exchange.stream = payload.get("stream") is True
        strip_usage = False
        if exchange.stream and exchange.operation in _USAGE_OPTION_OPERATIONS:
            body, strip_usage = _ask_for_stream_usage(body, payload)
        await self.runtime.hooks.admit(exchange)
        await forward(
            exchange,
            self.runtime.upstream,
            self.runtime.hooks,
            scope,
            receive,
            send,
            method="POST",
            path=scope["path"][3:],
            body=body,
            strip_usage=strip_usage,
        )

    async def list_models(self, exchange: Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = exchange.ctx.principal.allowed_models
        if allowed is None:
            await forward(
                exchange,
                self.runtime.upstream,
                self.runtime.hooks,
                scope,
                receive,
                send,
                method="GET",
                path="/models",
                body=None,
            )
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "tenantgate"} for m in sorted(allowed)]
        await _send_json(send, exchange.ctx, {"object": "list", "data": data})

    async def retrieve_model(self, exchange: Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        model = scope["path"][len("/v1/models/") :]
        if not exchange.ctx.principal.may_use(model):
            raise _model_not_found(model)
        await forward(
            exchange,
            self.runtime.upstream,
            self.runtime.hooks,
            scope,
            receive,
            send,
            method="GET",
            path=f"/models/{model}",
            body=None,
        )


def _ask_for_stream_usage(body: bytes, payload: dict[str, Any]) -> tuple[bytes, bool]:
    """Make sure the upstream sends the usage chunk; say whether the client had asked for it itself."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, False
    if "stream_options" not in payload and body.lstrip().startswith(b"{"):
        # Splice rather than re-serialise: every other byte of the request stays as the client sent it.
        head, brace, tail = body.partition(b"{")
        return head + brace + b'"stream_options":{"include_usage":true},' + tail, True
    rewritten = dict(payload)
    rewritten["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(rewritten), True


def _model_not_found(model: str) -> NotFound:
    return NotFound(
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


async def _send_json(send: Send, ctx: RequestContext, payload: object, status: int = 200) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", ctx.request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
