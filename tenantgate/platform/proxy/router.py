"""Dispatch of the OpenAI-compatible endpoints, as a raw ASGI layer in front of FastAPI.

Paths it does not serve fall through to the FastAPI app (admin, usage, docs, ops, and OpenAI-shaped 404s).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.platform.context import SCOPE_CONTEXT, RequestContext
from tenantgate.platform.errors import BadRequest, GatewayError, NotFound, send_error
from tenantgate.platform.proxy.forward import forward
from tenantgate.platform.proxy.http import ClientDisconnected, parse_json_object, read_body
from tenantgate.platform.runtime import Runtime

Handler = Callable[[RequestContext, Scope, Receive, Send], Awaitable[None]]


class ProxyRouter:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self.json_endpoint,
            ("POST", "/v1/embeddings"): self.json_endpoint,
            ("GET", "/v1/models"): self.list_models,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        handler = self.routes.get((scope["method"], path))
        if handler is None and scope["method"] == "GET" and path.startswith("/v1/models/"):
            handler = self.retrieve_model
        if handler is None:
            await self.app(scope, receive, send)
            return
        ctx: RequestContext = scope[SCOPE_CONTEXT]
        try:
            await handler(ctx, scope, receive, send)
        except GatewayError as error:
            await send_error(send, error, ctx.request_id)
        except ClientDisconnected:
            return

    async def json_endpoint(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(scope, receive, self.runtime.settings.max_request_body_bytes)
        payload = parse_json_object(body)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", param="model")
        if not ctx.principal.may_use(model):
            raise _model_not_found(model)
        await forward(
            ctx, self.runtime.upstream, scope, receive, send, method="POST", path=scope["path"][3:], body=body
        )

    async def list_models(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = ctx.principal.allowed_models
        if allowed is None:
            await forward(ctx, self.runtime.upstream, scope, receive, send, method="GET", path="/models", body=None)
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "tenantgate"} for m in sorted(allowed)]
        await _send_json(send, ctx, {"object": "list", "data": data})

    async def retrieve_model(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        model = scope["path"][len("/v1/models/") :]
        if not ctx.principal.may_use(model):
            raise _model_not_found(model)
        await forward(
            ctx, self.runtime.upstream, scope, receive, send, method="GET", path=f"/models/{model}", body=None
        )


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
