"""The Batch API: a batch is created only from the caller's own input file, after every line of it was checked, and
holding its worst case against the tenant's limits; it is reachable by its owner only; lists come from the index.

``POST /v1/batches`` names ``input_file_id``, which must be the caller's file (else the 404 of an unknown file) with
purpose ``batch``; the batch is created at the upstream and account holding that file. Its lines are checked and
estimated (``batch_input.py``), then admitted by the limiter with the batch's holds (``limits/batch.py``). The
created batch, its output and error files become the caller's (``object_answers.py``); its usage is metered per line
when it ends (``background/settlement.py``), found by the poller or by a retrieve, whichever comes first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import BatchAdmission, Exchange, Usage
from tenantgate.platform.errors import BadRequest, UpstreamUnavailable
from tenantgate.platform.proxy.batch_input import ENDPOINTS, BatchInput, InvalidBatchInput, check_lines
from tenantgate.platform.proxy.http import read_body
from tenantgate.platform.proxy.objects import forward_object, list_params, owned_holder, read_json, send_list
from tenantgate.platform.proxy.references import Reference
from tenantgate.platform.proxy.routes import FILE_CONTENT, LIST_BATCHES, Route
from tenantgate.platform.proxy.stored import check_references
from tenantgate.platform.proxy.upstream_calls import TooLarge, call, lines
from tenantgate.platform.upstream.registry import Target, Upstream
from tenantgate.tenants.metering.pricing import Measure

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_MAX_JSON = 64 * 1024
_MAX_BODY = 64 * 1024
_BATCHES_PAGE = (20, 100)  # OpenAI's default and largest page of batches
_BATCH = Measure(service_tier="batch")


async def serve(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    if route is LIST_BATCHES:
        await services.hooks.admit(exchange)
        limit, after, _, _ = list_params(
            scope["query_string"], default_limit=_BATCHES_PAGE[0], max_limit=_BATCHES_PAGE[1]
        )
        page = await services.objects.page(exchange.ctx.principal.tenant_id, "batch", limit=limit, after=after)
        data = [row.snapshot or {"id": row.id, "object": "batch"} for row in page.rows]
        await send_list(send, exchange, data, page.has_more)
    elif route.template == "/v1/batches":
        await _create(services, exchange, route, scope, receive, send)
    else:
        _, upstream, keys = await owned_holder(services, exchange, "batch", params["batch_id"])
        body = await read_body(scope, receive, _MAX_BODY) if route.method == "POST" else None
        await services.hooks.admit(exchange)
        await forward_object(services, exchange, route, params, upstream, keys, scope, receive, send, body=body)


async def _create(
    services: ProxyServices, exchange: Exchange, route: Route, scope: Scope, receive: Receive, send: Send
) -> None:
    raw, payload = await read_json(scope, receive, _MAX_JSON)
    endpoint = payload.get("endpoint")
    if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:
        raise BadRequest(
            f"Invalid 'endpoint': the gateway runs batches for {', '.join(sorted(ENDPOINTS))}.", param="endpoint"
        )
    file_id = payload.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise BadRequest("Missing required parameter: 'input_file_id'.", param="input_file_id")
    _, upstream, keys = await owned_holder(services, exchange, "file", file_id, "input_file_id")
    exchange.created_under = file_id
    indexed = await services.objects.get(exchange.ctx.principal.tenant_id, file_id)
    if indexed is not None and indexed.purpose is not None and indexed.purpose != "batch":
        raise BadRequest(
            f"The file {file_id} was uploaded with purpose {indexed.purpose!r}; a batch's input needs purpose 'batch'.",
            param="input_file_id",
        )
    found = await _read_input(services, exchange, upstream, keys, file_id, endpoint)
    exchange.batch = _estimate(services, exchange, found, endpoint)
    await services.hooks.admit(exchange)
    await forward_object(services, exchange, route, {}, upstream, keys, scope, receive, send, body=raw)


async def _read_input(
    services: ProxyServices,
    exchange: Exchange,
    upstream: Upstream,
    keys: dict[str, str] | None,
    file_id: str,
    endpoint: str,
) -> BatchInput:
    settings = services.settings
    path = FILE_CONTENT.upstream({"file_id": file_id})
    response = await call(services.http, upstream, keys, "GET", path, stream=True)
    if response.status >= 400:
        response.close()
        if response.status == 404:
            raise BadRequest(f"The input file {file_id} could not be read upstream.", param="input_file_id")
        raise UpstreamUnavailable(f"The upstream could not read the input file (status {response.status}).")
    try:
        return await check_lines(
            lines(response, max_line=settings.max_request_body_bytes, max_total=settings.batch_input_max_bytes),
            endpoint=endpoint,
            principal=exchange.ctx.principal,
            routing=services.routing,
            max_requests=settings.batch_input_max_requests,
            default_max_output=settings.default_max_output_tokens,
            unpriced=_unpriced(services, exchange) if settings.unpriced_models == "refuse" else None,
            check_references=_owned_at(services, exchange, upstream),
        )
    except TooLarge as exc:
        if exc.total:
            raise InvalidBatchInput(
                f"The input file is larger than {settings.batch_input_max_bytes} bytes.", param="input_file_id"
            ) from None
        raise InvalidBatchInput(
            f"Line {exc.line} of the input file is longer than {settings.max_request_body_bytes} bytes.",
            param="input_file_id",
        ) from None


def _owned_at(
    services: ProxyServices, exchange: Exchange, upstream: Upstream
) -> Callable[[list[Reference]], Awaitable[None]]:
    """The check of a line's references: the caller's objects, held where the batch runs."""
    targets = (Target(upstream, ""),)

    async def check(named: list[Reference]) -> None:
        await check_references(services, exchange, named, targets)

    return check


def _unpriced(services: ProxyServices, exchange: Exchange) -> Callable[[str], bool]:
    prices, routing, tenant_id = services.metering.prices, services.routing, exchange.ctx.principal.tenant_id
    known: dict[str, bool] = {}

    def unpriced(model: str) -> bool:
        if model not in known:
            names = (model, *(target.model for target in routing.targets(model)))
            known[model] = prices.quote(names, _BATCH, tenant_id=tenant_id) is not None
        return known[model]

    return unpriced


def _estimate(services: ProxyServices, exchange: Exchange, found: BatchInput, endpoint: str) -> BatchAdmission:
    """What the batch holds: prompt tokens per model on the queues; every line's worst case, at batch prices."""
    prices = services.metering.prices
    tenant_id = exchange.ctx.principal.tenant_id
    nanos = 0
    for model, worst in found.worst_tokens.items():
        prompt = found.prompt_tokens[model]
        usage = Usage(input_tokens=prompt, output_tokens=worst - prompt)
        cost = prices.cost(model, usage, measure=_BATCH, tenant_id=tenant_id)
        nanos += cost.total_nusd
    return BatchAdmission(
        endpoint=endpoint,
        queue_tokens=dict(found.prompt_tokens),
        month_tokens=sum(found.worst_tokens.values()),
        month_nano_usd=nanos,
        stored_chat=list(found.stored_chat),
        worst_tokens=dict(found.worst_tokens),
    )
