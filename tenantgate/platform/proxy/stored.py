"""Responses stored upstream: reachable only by the tenant that created them.

``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``, ``POST /v1/responses/{id}/cancel``
and ``previous_response_id`` are forwarded only for the owner, to the upstream that stored the response; anyone
else gets the same 404 as for an id that never existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from tenantgate.platform.errors import NotFound
from tenantgate.platform.proxy.exchange import Exchange
from tenantgate.platform.proxy.forward import ForwardPolicy, forward, tenant_keys
from tenantgate.platform.proxy.http import read_body
from tenantgate.platform.proxy.routes import Route
from tenantgate.platform.upstream.registry import Target
from tenantgate.tenants.objects import ObjectOwnership, Owner

if TYPE_CHECKING:
    from tenantgate.platform.runtime import Runtime


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", param=param)


async def _owned(ownership: ObjectOwnership, exchange: Exchange, response_id: str) -> Owner | None:
    owner = await ownership.owner(response_id)
    return owner if owner is not None and owner.tenant_id == exchange.ctx.principal.tenant_id else None


async def serve(
    runtime: Runtime, exchange: Exchange, route: Route, response_id: str, scope: Scope, receive: Receive, send: Send
) -> None:
    method = route.method
    owner = await _owned(runtime.ownership, exchange, response_id)
    upstream = None
    if owner is not None:  # the tenant's own endpoint for that upstream, if it set one
        own = exchange.ctx.principal.own_upstreams
        upstream = own.get(owner.upstream) or runtime.routing.upstreams.get(owner.upstream)
    if upstream is None:
        raise _not_found(response_id)
    body = None
    if method == "POST":
        body = await read_body(scope, receive, runtime.settings.max_request_body_bytes)
    await forward(
        exchange,
        runtime.http,
        runtime.hooks,
        (Target(upstream, ""),),
        scope,
        receive,
        send,
        method=method,
        path=route.upstream({"response_id": response_id}, scope["query_string"]),
        body_for=lambda _t: body,
        policy=ForwardPolicy(runtime.settings.upstream_max_retry_wait_seconds),
        tenant_keys=tenant_keys(exchange),
    )


async def check_previous_response(
    runtime: Runtime, exchange: Exchange, payload: dict[str, Any], targets: tuple[Target, ...]
) -> tuple[Target, ...]:
    """A continuation must name the caller's own response, and goes to the upstream that stored it."""
    previous = payload.get("previous_response_id")
    if previous is None:
        return targets
    if not isinstance(previous, str):
        raise _not_found(str(previous), param="previous_response_id")
    owner = await _owned(runtime.ownership, exchange, previous)
    if owner is None:
        raise _not_found(previous, param="previous_response_id")
    same_upstream = tuple(t for t in targets if t.upstream.name == owner.upstream)
    if not same_upstream:
        raise _not_found(previous, param="previous_response_id")
    return same_upstream


class OwnershipHook:
    """Records the owner of every response the upstream stored, before the client receives its id."""

    name = "ownership"

    def __init__(self, ownership: ObjectOwnership) -> None:
        self.ownership = ownership

    async def admit(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        if (
            exchange.operation == "responses"
            and exchange.response_id
            and exchange.status < 400
            and exchange.path == "/v1/responses"
            and (exchange.payload or {}).get("store") is not False
        ):
            owner = Owner(exchange.ctx.principal.tenant_id, exchange.upstream_name)
            await self.ownership.record(exchange.response_id, "response", owner)

    def finish(self, exchange: Exchange) -> None:
        return None
