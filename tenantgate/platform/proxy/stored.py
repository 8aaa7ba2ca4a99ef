"""Objects stored upstream: reachable only by the tenant that created them, with the credentials of the account
that holds them.

``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and ``POST /v1/responses/{id}/cancel``
are forwarded only for the owner, to the upstream that stored the response; ids named in request bodies
(``previous_response_id``, input items, files...) are checked the same way before anything is forwarded. Anyone
else gets the same 404 as for an id that never existed.

An object in the platform's account is reached with the platform's credentials; one in the tenant's own account
(created with its BYOK key or endpoint) only with the tenant's current BYOK record for that upstream; without one,
404: never the platform's key on an id a tenant's endpoint named.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import GatewayError, NotFound
from tenantgate.platform.proxy.cursors import among_listed, another_tenants_cursor, send_empty_page
from tenantgate.platform.proxy.forward import ForwardPolicy, forward
from tenantgate.platform.proxy.http import read_body
from tenantgate.platform.proxy.references import Reference
from tenantgate.platform.proxy.routes import RETRIEVE_CONVERSATION_ITEM, Route
from tenantgate.platform.proxy.upstream_calls import get_json
from tenantgate.platform.upstream.paths import is_segment
from tenantgate.platform.upstream.registry import Target, Upstream
from tenantgate.tenants.objects import Account, ObjectOwnership, Owner

if TYPE_CHECKING:
    from tenantgate.platform.proxy.services import ProxyServices

_MAX_REFERENCES = 256
_TRACKED = frozenset(
    {"response", "item", "file", "conversation", "vector_store", "audio", "batch", "upload", "chat_completion",
     "vector_store_file_batch"}
)  # fmt: skip
"""Kinds of referenced objects the gateway records owners of; any other kind named in a body is nobody's."""
_MAX_BODY = 64 * 1024  # what a cancel may carry (nothing, in OpenAI's API)
_NOT_FOUND_MESSAGES = {
    "response": "No response found with id '{id}'.",
    "item": "Item with id '{id}' not found.",
    "conversation": "Conversation with id '{id}' not found.",
    "file": "No such File object: {id}",
    "vector_store": "No vector store found with id '{id}'.",
    "container": "Container with id '{id}' not found.",
    "audio": "Audio with id '{id}' not found.",
    "batch": "No batch found with id '{id}'.",
    "chat_completion": "Chat completion with id '{id}' not found.",
    "vector_store_file_batch": "No file batch found with id '{id}'.",
    "upload": "No upload found with id '{id}'.",
    "upload_part": "No upload part found with id '{id}'.",
}


def not_found(kind: str, object_id: str, param: str | None = None) -> NotFound:
    message = _NOT_FOUND_MESSAGES.get(kind, "No object found with id '{id}'.").format(id=object_id[:256])
    return NotFound(message, param=param)


async def owned(
    ownership: ObjectOwnership, exchange: Exchange, object_id: str, kind: str | None = None
) -> Owner | None:
    """The owner of ``object_id`` if it is the caller's tenant, names a ``kind`` object (when given) and the account
    holding it is reachable now. An id of another kind is nobody's here: a file id on a batch's route never reaches
    the upstream (the answer would differ from an unknown id's, and the upstream would be asked for nothing)."""
    principal = exchange.ctx.principal
    owner = await ownership.owner(object_id, asker=principal.tenant_id)  # a foreign id costs what an unknown one does
    if owner is None or owner.tenant_id != principal.tenant_id:
        return None
    if kind is not None and owner.kind is not None and owner.kind != kind:
        return None
    if owner.account == "tenant" and owner.upstream not in principal.upstream_keys:
        return None  # the tenant's own account, but its BYOK record for that upstream is gone
    return owner


def holder(services: ProxyServices, exchange: Exchange, owner: Owner) -> tuple[Upstream | None, dict[str, str] | None]:
    """The upstream (and credentials) that hold an owned object."""
    if owner.account == "platform":
        return services.routing.upstreams.get(owner.upstream), None
    principal = exchange.ctx.principal
    upstream = principal.own_upstreams.get(owner.upstream) or services.routing.upstreams.get(owner.upstream)
    return upstream, {owner.upstream: principal.upstream_keys[owner.upstream].get_secret_value()}


async def serve(
    services: ProxyServices,
    exchange: Exchange,
    route: Route,
    response_id: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    owner = await owned(services.ownership, exchange, response_id, "response")
    upstream, keys = holder(services, exchange, owner) if owner is not None else (None, None)
    if upstream is None:
        raise not_found("response", response_id)
    # A background response is billed from what the upstream reports once it ended: read before it goes.
    settler = services.settler if route.method == "DELETE" else None
    if (
        settler is not None
        and owner is not None
        and not await settler.settle_response_before_deleting(owner.tenant_id, response_id)
    ):
        raise ResponseNotSettled(
            f"The response '{response_id[:256]}' is still running in the background; cancel it "
            f"(POST /v1/responses/{response_id[:256]}/cancel) or wait until it ends, then delete it.",
            headers={"retry-after": "5"},
        )

    async def among_input_items(item_id: str) -> bool:
        """A cursor the gateway has no record of (listed by another process, not yet written): the caller's if it is
        one of this response's input items at its upstream."""
        assert owner is not None and upstream is not None
        return await among_listed(services, route, {"response_id": response_id}, upstream, keys, owner, item_id)

    found = among_input_items if route.template.endswith("/input_items") else None
    if await another_tenants_cursor(services.ownership, exchange, route, scope["query_string"], found):
        await send_empty_page(send, exchange)
        return
    body = None
    if route.method == "POST":
        body = await read_body(scope, receive, _MAX_BODY)
    if route.template.endswith("/input_items"):
        # The items listed become the caller's (conversation_answers.py): the next page's cursor is then known.
        exchange.keep_answer = True
        exchange.created_under = response_id
    await forward(
        exchange,
        services.http,
        services.hooks,
        (Target(upstream, ""),),
        scope,
        receive,
        send,
        method=route.method,
        path=route.upstream({"response_id": response_id}, scope["query_string"]),
        body_for=lambda _t: body,
        policy=ForwardPolicy(services.settings.upstream_max_retry_wait_seconds),
        tenant_keys=keys,
    )


async def check_references(
    services: ProxyServices, exchange: Exchange, references: Iterable[Reference], targets: tuple[Target, ...]
) -> tuple[Target, ...]:
    """Every referenced object must be the caller's; the request then goes to the upstream that holds them."""
    upstreams: set[str] = set()
    references = list(references)
    conversation: Reference | None = next((r for r in references if r.kind == "conversation"), None)
    for count, reference in enumerate(references):
        if count >= _MAX_REFERENCES:
            raise NotFound(f"A request may name at most {_MAX_REFERENCES} stored objects.", param=reference.param)
        if reference.kind not in _TRACKED:
            raise not_found(reference.kind, reference.id, reference.param)  # not tracked per tenant yet: nobody's
        owner = await owned(services.ownership, exchange, reference.id, reference.kind)
        if owner is None and reference.kind == "item" and conversation is not None:
            owner = await item_of_conversation(services, exchange, conversation.id, reference.id)
        if owner is None:
            raise not_found(reference.kind, reference.id, reference.param)
        upstreams.add(owner.upstream)
    if not upstreams:
        return targets
    same_upstream = tuple(t for t in targets if t.upstream.name in upstreams)
    if len(upstreams) > 1 or not same_upstream:
        first = next(iter(references))
        raise not_found(first.kind, first.id, first.param)
    return same_upstream


async def item_of_conversation(
    services: ProxyServices, exchange: Exchange, conversation_id: str, item_id: str
) -> Owner | None:
    """An item the gateway has not seen (a Responses turn's input, appended to the conversation upstream) named
    beside a conversation of the caller's: it is the caller's if the upstream holding that conversation finds it
    there. Then it is recorded like a listed item (first owner wins)."""
    if not (is_segment(item_id) and is_segment(conversation_id)):
        return None  # no such id can be stored upstream; never put in a path
    conversation_owner = await owned(services.ownership, exchange, conversation_id, "conversation")
    if conversation_owner is None:
        return None
    upstream, keys = holder(services, exchange, conversation_owner)
    if upstream is None:
        return None
    path = RETRIEVE_CONVERSATION_ITEM.upstream({"conversation_id": conversation_id, "item_id": item_id})
    status, answer = await get_json(services.http, upstream, keys, "GET", path)
    if status != 200 or answer is None or answer.get("id") != item_id:
        return None
    if await services.ownership.record(item_id, "item", conversation_owner) is not None:
        return None
    return conversation_owner


class ResponseNotSettled(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "response_in_progress"


class OwnershipConflict(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_object_conflict"


_OWNED_ANSWERS = frozenset({"/v1/responses", "/v1/responses/compact"})


class OwnershipHook:
    """Records the owner of every response (and output item) the upstream stored, before the client receives
    its id; an answer naming an id someone else owns is refused (first owner wins, see tenants/objects.py)."""

    name = "ownership"

    def __init__(self, ownership: ObjectOwnership) -> None:
        self.ownership = ownership

    async def admit(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        if exchange.audio_ids and exchange.status < 400:
            await self._claim(exchange, [(audio_id, "audio") for audio_id in exchange.audio_ids])
            return
        if not (
            exchange.operation == "responses"
            and exchange.response_id
            and exchange.status < 400
            and exchange.path in _OWNED_ANSWERS
            and (exchange.payload or {}).get("store") is not False
        ):
            return
        ids = [(item, "item") for item in exchange.output_item_ids]
        if exchange.path == "/v1/responses":  # a compaction is no stored response: only its items can be named
            ids.insert(0, (exchange.response_id, "response"))
        await self._claim(exchange, ids)

    async def _claim(self, exchange: Exchange, ids: list[tuple[str, str]]) -> None:
        principal = exchange.ctx.principal
        account: Account = "tenant" if exchange.upstream_name in principal.upstream_keys else "platform"
        owner = Owner(principal.tenant_id, exchange.upstream_name, account, principal.key_id)
        for object_id, kind in ids:
            if await self.ownership.record(object_id, kind, owner) is not None:
                # Metered all the same (the upstream did the work); the client gets an error instead of the answer.
                exchange.error_type = OwnershipConflict.code
                exchange.withheld = OwnershipConflict(
                    "The upstream answered with an object id that is not this tenant's; the answer was withheld. "
                    f"(request id {exchange.ctx.request_id})"
                )
                return

    def finish(self, exchange: Exchange) -> None:
        return None
