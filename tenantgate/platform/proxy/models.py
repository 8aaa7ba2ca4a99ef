"""GET /v1/models and /v1/models/{model}: only what the caller may use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Principal
from tenantgate.platform.errors import NotFound, UpstreamUnavailable
from tenantgate.platform.proxy.forward import ForwardPolicy, forward, tenant_keys
from tenantgate.platform.proxy.model_access import granted, is_fine_tuned, on_own_upstreams, reaches_fine_tune
from tenantgate.platform.proxy.routes import LIST_MODELS, RETRIEVE_MODEL, Route
from tenantgate.platform.upstream.paths import is_segment
from tenantgate.platform.upstream.registry import Target

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices


def not_found(model: str) -> NotFound:
    return NotFound(
        f"The model `{model}` does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


def allowed_targets(
    services: ProxyServices, principal: Principal, model: str, route: Route | None = None
) -> tuple[Target, ...]:
    """The deployments of ``model`` if the caller may use it (by its name or its alias's); else 404.

    Deployments on an upstream the tenant set its own base URL for go to that endpoint instead. Where the model
    becomes a path segment upstream (an Azure deployment), a name outside the identifier grammar routes nowhere.
    """
    routing = services.routing
    targets = routing.targets(model)
    if route is not None and route.deployment_scoped:
        targets = tuple(t for t in targets if t.upstream.kind != "azure" or is_segment(t.model))
    if targets and not granted(principal, routing, model):
        # A fine-tuned model, with no allow-list to name it: only from the tenant's own account (model_access.py).
        fine_tuned = reaches_fine_tune(routing, model)
        targets = on_own_upstreams(principal, targets) if fine_tuned and principal.allowed_models is None else ()
    if not targets:
        raise not_found(model)
    own = principal.own_upstreams
    if own:
        targets = tuple(Target(own.get(t.upstream.name, t.upstream), t.model) for t in targets)
    return targets


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tenantgate"}


async def serve(
    services: ProxyServices, exchange: Exchange, route: Route, scope: Scope, receive: Receive, send: Send
) -> None:
    principal = exchange.ctx.principal
    routing = services.routing
    path: str = scope["path"]
    if route is LIST_MODELS:
        if routing.declared_models:
            names = [name for name in routing.declared_models if granted(principal, routing, name)]
            await send_json(send, exchange, {"object": "list", "data": [_model_object(n) for n in names]})
            return
        if principal.allowed_models is not None:
            await _filtered_upstream_list(services, exchange, principal, scope, receive, send)
            return
        primary = routing.primary
        if primary.name not in principal.upstream_keys:
            await _list_without_fine_tunes(services, exchange, send)  # the platform's account: others' fine-tunes
            return
        # The tenant's own account (its key, at its own base URL if it set one): its own list, fine-tunes and all.
        targets: tuple[Target, ...] = (Target(principal.own_upstreams.get(primary.name, primary), ""),)
        upstream_path = LIST_MODELS.upstream({})
    else:
        model = path[len("/v1/models/") :]
        targets = allowed_targets(services, principal, model)
        if model in routing.declared_models or routing.canonical(model) != model:
            await send_json(send, exchange, _model_object(routing.canonical(model)))
            return
        params = RETRIEVE_MODEL.match(path)
        if params is None:  # not one segment of the identifier grammar: nothing upstream can be asked
            raise not_found(model)
        upstream_path = RETRIEVE_MODEL.upstream(params)
    await forward(
        exchange,
        services.http,
        services.hooks,
        targets,
        scope,
        receive,
        send,
        method="GET",
        path=upstream_path,
        body_for=lambda _t: None,
        policy=ForwardPolicy(services.settings.upstream_max_retry_wait_seconds),
        tenant_keys=tenant_keys(exchange),
    )


async def _platform_list(services: ProxyServices) -> dict[str, Any] | None:
    """The primary upstream's model list, asked with the platform's key; None if it could not be had."""
    upstream = services.routing.primary
    headers = []
    auth = upstream.auth_header(None)
    if auth is not None:
        headers.append(auth)
    try:
        response = await services.http.session.request(
            "GET", upstream.url(LIST_MODELS.upstream({}), None), headers=headers, timeout=upstream.json_timeout
        )
        try:
            listing = orjson.loads(await response.read()) if response.status == 200 else None
        finally:
            response.release()
    except Exception:
        return None
    return listing if isinstance(listing, dict) and isinstance(listing.get("data"), list) else None


async def _list_without_fine_tunes(services: ProxyServices, exchange: Exchange, send: Send) -> None:
    """The platform account's list without its fine-tuned models, which are granted by name (model_access.py)."""
    listing = await _platform_list(services)
    if listing is None:
        raise UpstreamUnavailable("The upstream could not list its models. Please retry shortly.")
    kept = [m for m in listing["data"] if not (isinstance(m, dict) and is_fine_tuned(str(m.get("id", ""))))]
    await send_json(send, exchange, {**listing, "data": kept})


async def _filtered_upstream_list(
    services: ProxyServices, exchange: Exchange, principal: Principal, scope: Scope, receive: Receive, send: Send
) -> None:
    """The upstream's list, reduced to the caller's allow-list (OpenAI lists only what a key may use)."""
    listing = await _platform_list(services) or {}
    # The upstream's own entries (its created, owned_by); if it could not be asked, the allowed names as ours.
    entries = {m.get("id"): m for m in listing.get("data", []) if isinstance(m, dict)}
    allowed = sorted(principal.allowed_models or ())
    data = [entries.get(name) or _model_object(name) for name in allowed if not entries or name in entries]
    await send_json(send, exchange, {"object": "list", "data": data})


async def send_json(send: Send, exchange: Exchange, payload: object, status: int = 200) -> None:
    body = orjson.dumps(payload)
    exchange.status = status
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", exchange.ctx.request_id.encode()),
                *exchange.response_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
