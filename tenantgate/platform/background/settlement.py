"""Billing what ran upstream without a caller waiting: batches (per line of their output) and background responses.

**Once.** Every line of a batch's output is one usage event whose id is derived from the batch id and the line's
``custom_id`` (unique, checked at create); a background response's completion has the id the retrieve path uses
too (``usage.completion_event_id``). The store keeps an event id once, so metering a batch again (a retrieve and
the poller at the same moment, a process killed halfway and the next one starting over) adds nothing. Only then is
the batch claimed as settled in the index (one conditional update: one winner across processes), and the winner
releases what the batch held against the tenant's limits and charges what its lines used. A process killed between
metering and the claim leaves the batch due: the next poll meters again (nothing doubles) and claims it. Killed
between the claim and the release, the hold stays on the month's counters until they are seeded again (erring
towards refusing, never towards unbilled work).

**Attribution.** Events are the batch owner's: its tenant and the key that created it; batch work is flagged
``batch`` and priced at the batch rate (writer.py), and shows in the Usage API under ``batch=true``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson

from tenantgate.core.exchange import NO_TOOL_CALLS, ToolCalls, Usage
from tenantgate.ids import new_id
from tenantgate.platform.limits.batch import BatchCharge, holds_of
from tenantgate.platform.limits.hook import Limiter
from tenantgate.platform.proxy.batch_input import line_key
from tenantgate.platform.proxy.conversation_answers import CHAT_COMPLETION, completion_entry
from tenantgate.platform.proxy.object_answers import BATCH_ENDED, file_entry
from tenantgate.platform.proxy.routes import FILE_CONTENT, RETRIEVE_BATCH, RETRIEVE_FILE, RETRIEVE_RESPONSE
from tenantgate.platform.proxy.upstream_calls import call, get_json, lines
from tenantgate.platform.proxy.usage import completion_event_id, tool_calls_of
from tenantgate.platform.upstream.client import UpstreamClient
from tenantgate.platform.upstream.registry import Upstream
from tenantgate.tenants.metering.events import MAX_TEXT_CHARS, category_of, encode, tools_of
from tenantgate.tenants.metering.meter import Metering
from tenantgate.tenants.metering.pricing import Measure
from tenantgate.tenants.metering.usage_event import UsageEvent
from tenantgate.tenants.models import TenantObject
from tenantgate.tenants.object_index import ObjectIndex
from tenantgate.tenants.objects import ObjectOwnership, Owner

log = logging.getLogger("tenantgate.objects")
security = logging.getLogger("tenantgate.security")

Reach = Callable[[Owner], Awaitable[tuple[Upstream, dict[str, str] | None] | None]]
"""The upstream and credentials that hold an owner's objects now (None: its BYOK record is gone)."""

_RESPONSE_ENDED = frozenset({"completed", "failed", "incomplete", "cancelled"})
_MAX_OUTPUT_LINE = 64 * 1024 * 1024
_MAX_OUTPUT_FILE = 16 * 1024**3


_MAX_STORED_PER_LINE = 256
UNREADABLE_POLLS = 20
"""Polls of an ended batch whose output file cannot be read before it is billed from its estimate instead."""


def batch_line_event_id(batch_id: str, custom_id: str) -> str:
    digest = hashlib.sha256(b"batch:" + batch_id.encode() + b"\n" + custom_id.encode()).hexdigest()[:32]
    return "evt_bt" + digest


def _ended_at(batch: dict[str, Any]) -> float:
    for name in ("completed_at", "failed_at", "expired_at", "cancelled_at"):
        value = batch.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 2**40:
            return float(value)
    return time.time()


def _text(value: Any, default: str = "") -> str:
    if not isinstance(value, str):
        return default
    return value.replace("\x00", "\ufffd")[:MAX_TEXT_CHARS]


def _event(
    owner: Owner,
    *,
    event_id: str,
    request_id: str,
    at: float,
    endpoint: str,
    model: str,
    status: int,
    usage: Usage | None,
    batch: bool,
    tools: ToolCalls = NO_TOOL_CALLS,
) -> UsageEvent:
    """A usage event of work nobody's request was waiting for: the owner's, billable when it has ``usage`` (with
    the hosted tools its response used, counted as on the request path)."""
    counted = usage or Usage()
    tools = tools if usage is not None else NO_TOOL_CALLS
    return {
        "id": event_id,
        "request_id": request_id,
        "occurred_at": at,
        "tenant_id": owner.tenant_id,
        "api_key_id": owner.api_key_id or "",
        "endpoint": endpoint,
        "category": category_of(endpoint),
        "model": model,
        "upstream": owner.upstream,
        "upstream_model": None,
        "response_model": model or None,
        "status": status,
        "stream": False,
        "billable": usage is not None,
        "batch": batch,
        "usage_source": "upstream" if usage is not None else None,
        "input_tokens": counted.input_tokens,
        "cached_input_tokens": counted.cached_input_tokens,
        "output_tokens": counted.output_tokens,
        "reasoning_tokens": counted.reasoning_tokens,
        "input_audio_tokens": counted.input_audio_tokens,
        "output_audio_tokens": counted.output_audio_tokens,
        "image_tokens": counted.image_tokens,
        "quantity": 0,
        "latency_ms": None,
        "ttft_ms": None,
        "client_disconnected": False,
        "error_type": None if 0 < status < 400 else str(status),
        "attempts": 1,
        "web_search_calls": tools.web_search_calls,
        "file_search_calls": tools.file_search_calls,
        "code_interpreter_sessions": tools.code_interpreter_sessions,
    }


def _stored_objects(
    endpoint: str, status: int, body: dict[str, Any], stores_chat: bool = False
) -> list[tuple[str, str]]:
    """What a successful line stored upstream. A Responses line: its response and output items (stored unless its
    request said ``store: false``, which the output does not tell: owning an id that was not stored only lets its
    owner get the upstream's 404). A chat completion line: its completion, if the line asked ``store: true``
    (``stores_chat``, from the input file read when the batch was created)."""
    if not 0 < status < 400:
        return []
    if endpoint == "/v1/chat/completions":
        completion_id = body.get("id")
        if stores_chat and body.get("object") == "chat.completion" and isinstance(completion_id, str) and completion_id:
            return [(completion_id, CHAT_COMPLETION)]
        return []
    if endpoint != "/v1/responses" or body.get("object") != "response":
        return []
    response_id = body.get("id")
    if not isinstance(response_id, str) or not response_id.startswith("resp_"):
        return []
    stored = [(response_id, "response")]
    output = body.get("output")
    for item in output if isinstance(output, list) else []:
        item_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(item_id, str) and item_id:
            stored.append((item_id, "item"))
    return stored[:_MAX_STORED_PER_LINE]


class Settler:
    def __init__(
        self,
        *,
        http: UpstreamClient,
        ownership: ObjectOwnership,
        index: ObjectIndex,
        metering: Metering,
        limiter: Limiter,
        reach: Reach,
        unreadable_polls: int = UNREADABLE_POLLS,
    ) -> None:
        self.http = http
        self.ownership = ownership
        self.index = index
        self.metering = metering
        self.limiter = limiter
        self.reach = reach
        self.unreadable_polls = unreadable_polls
        """Polls that found an ended batch's output unreadable before it is billed from its estimate."""
        self.estimated_batches = 0
        """Batches this process billed from their estimate (their output could never be read)."""
        self._running: dict[str, asyncio.Task[None]] = {}

    # -- entry points ----------------------------------------------------------------------------------------------

    async def batch_seen(self, owner: Owner, batch: dict[str, Any]) -> None:
        """A caller was shown an ended batch: settle it in the background (at most one run per batch here)."""
        batch_id = batch.get("id")
        if isinstance(batch_id, str) and batch_id not in self._running:
            self._spawn(batch_id, self.settle_batch(owner, batch))

    async def _settle_here_once(self, owner: Owner, batch_id: str, batch: dict[str, Any], *, polled: bool) -> None:
        """Settle, unless this process is at it already (then wait for that run)."""
        running = self._running.get(batch_id)
        if running is None:
            self._spawn(batch_id, self.settle_batch(owner, batch, polled=polled))
            running = self._running[batch_id]
        await asyncio.wait({running})

    async def settle_before_deleting(self, tenant_id: str, file_id: str) -> str | None:
        """A file of the tenant is about to be deleted: each of its batches still unsettled whose output or error
        file it is (as the caller may have been shown) is looked at now and settled if it has ended, so its output
        is read before it is gone. The id of a batch that is still unsettled (not ended, or its output could not be
        read just now), or None when the file may go."""
        for row in await self.index.in_flight(tenant_id, "batch"):
            snapshot = row.snapshot or {}
            if file_id not in (snapshot.get("output_file_id"), snapshot.get("error_file_id")):
                continue
            await self.poll(row, counted=False)
            now = await self.index.get(tenant_id, row.id)
            if now is not None and now.settled_at is None:
                return row.id
        return None

    async def poll(self, row: TenantObject, *, counted: bool = True) -> None:
        """The poller's look at one object in flight (``counted``: a poll that finds a batch's output unreadable
        counts towards billing it from its estimate; a look on a caller's behalf does not)."""
        owner = Owner(row.tenant_id, row.upstream, "tenant" if row.account == "tenant" else "platform", row.api_key_id)
        reached = await self.reach(owner)
        if reached is None:
            log.warning(
                "objects: %s %s cannot be reached (its tenant's key for %r is gone)", row.kind, row.id, row.upstream
            )
            return
        upstream, keys = reached
        if row.kind == "batch":
            status, batch = await get_json(
                self.http, upstream, keys, "GET", RETRIEVE_BATCH.upstream({"batch_id": row.id})
            )
            if status != 200 or batch is None or batch.get("id") != row.id:
                return
            if not await self.observe_batch(owner, batch):
                await self._give_up(owner, row)
            elif batch.get("status") in BATCH_ENDED:
                await self._settle_here_once(owner, row.id, batch, polled=counted)
        elif row.kind == "response":
            await self._poll_response(owner, row, upstream, keys)
        else:
            await self.index.claim_settlement(row.tenant_id, row.id)  # nothing to watch

    async def close(self, limit_seconds: float = 5.0) -> None:
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=limit_seconds)
        for task in tasks:
            task.cancel()

    # -- batches ---------------------------------------------------------------------------------------------------

    async def observe_batch(self, owner: Owner, batch: dict[str, Any]) -> bool:
        """Record what a batch answer names (its output files become the owner's) and its state; False if it names
        another tenant's file (then nothing of it is read or billed)."""
        batch_id = str(batch.get("id"))
        for name in ("output_file_id", "error_file_id"):
            file_id = batch.get(name)
            if isinstance(file_id, str) and await self.ownership.record(file_id, "file", owner) is not None:
                security.warning("security: batch %s names file %s of another tenant; not read", batch_id, file_id)
                return False
        status = batch.get("status")
        await self.index.seen(
            owner.tenant_id, batch_id, status=status[:32] if isinstance(status, str) else None, snapshot=batch
        )
        return True

    async def _give_up(self, owner: Owner, row: TenantObject) -> None:
        """A batch whose answers name another tenant's files is not read again: watching it ends, what it held is
        released, nothing of it is billed (the security log says why)."""
        if await self.index.claim_settlement(owner.tenant_id, row.id):
            holds = holds_of((row.state or {}).get("holds") or [])
            self.limiter.settle_batch(owner.tenant_id, holds, BatchCharge(), time.time())

    async def settle_batch(self, owner: Owner, batch: dict[str, Any], *, polled: bool = False) -> None:
        batch_id = batch.get("id")
        if not isinstance(batch_id, str):
            return
        row = await self.index.get(owner.tenant_id, batch_id)
        if row is None or row.settled_at is not None:
            return
        reached = await self.reach(owner)
        if reached is None:
            return  # the poller tries again
        upstream, keys = reached
        state = row.state or {}
        endpoint = state.get("endpoint") if isinstance(state.get("endpoint"), str) else batch.get("endpoint")
        at = _ended_at(batch)
        charge = BatchCharge()
        output = batch.get("output_file_id")
        stored_chat = state.get("stored_chat")
        stores = (
            frozenset(i for i in stored_chat if isinstance(i, str)) if isinstance(stored_chat, list) else frozenset()
        )
        if isinstance(output, str):
            try:
                await self._meter_output(
                    owner, batch_id, str(endpoint or ""), output, at, upstream, keys, charge, stores
                )
            except Exception as exc:
                if not await self._unreadable(owner, batch_id, state, polled, exc):
                    raise
                charge = self._meter_estimate(owner, batch_id, str(endpoint or ""), state, at)
        for name in ("output_file_id", "error_file_id"):
            file_id = batch.get(name)
            if isinstance(file_id, str):
                await self._index_file(owner, file_id, upstream, keys)
        if await self.index.claim_settlement(owner.tenant_id, batch_id):
            holds = holds_of(state.get("holds") or [])
            self.limiter.settle_batch(owner.tenant_id, holds, charge, at)
            log.info(
                "objects: batch %s settled: %d lines billed, %d tokens, %d holds released",
                batch_id,
                charge.lines,
                charge.tokens,
                len(holds),
            )

    async def _meter_output(
        self,
        owner: Owner,
        batch_id: str,
        endpoint: str,
        file_id: str,
        at: float,
        upstream: Upstream,
        keys: dict[str, str] | None,
        charge: BatchCharge,
        stores: frozenset[str] = frozenset(),
    ) -> None:
        response = await call(
            self.http, upstream, keys, "GET", FILE_CONTENT.upstream({"file_id": file_id}), stream=True
        )
        if response.status >= 400:
            response.close()
            raise RuntimeError(f"the output file {file_id} of batch {batch_id} answered {response.status}")
        nanos = 0
        async for _, raw in lines(response, max_line=_MAX_OUTPUT_LINE, max_total=_MAX_OUTPUT_FILE):
            found = self._line_event(owner, batch_id, endpoint, raw, at, stores)
            if found is None:
                continue
            event, usage, stored = found
            for object_id, kind in stored:
                # First owner wins: an id someone else owns stays theirs (record logs the conflict).
                if await self.ownership.record(object_id, kind, owner) is None and kind == CHAT_COMPLETION:
                    await self._index_completion(owner, object_id, event)
            self.metering.spool.append_or_hold(encode(event))
            self.metering.writer.notify()
            if usage is not None:
                charge.lines += 1
                charge.tokens += usage.total_tokens
                charge.models[event["model"]] = charge.models.get(event["model"], 0) + usage.total_tokens
                measure = Measure(category=event["category"], service_tier="batch", tools=tools_of(event))
                cost = self.metering.prices.cost(
                    event["model"], usage, measure=measure, tenant_id=owner.tenant_id, at=at
                )
                nanos += cost.total_nusd
        charge.nano_usd = nanos

    async def _unreadable(
        self, owner: Owner, batch_id: str, state: dict[str, Any], polled: bool, exc: Exception
    ) -> bool:
        """An ended batch's output could not be read: True once as many polls as ``unreadable_polls`` found it so
        (then it is billed from its estimate); before, the poll is counted beside the batch and the poller retries.
        Looks on a caller's behalf are not counted: retrieving often does not hasten an estimate."""
        failures = state.get("unreadable")
        failures = (failures if isinstance(failures, int) else 0) + (1 if polled else 0)
        if failures < self.unreadable_polls:
            if polled:
                state["unreadable"] = failures
                await self.index.seen(owner.tenant_id, batch_id, state=state)
            return False
        log.error(
            "objects: the output of batch %s could not be read in %d polls (%s: %s); billed from its estimate",
            batch_id,
            failures,
            type(exc).__name__,
            str(exc)[:200],
        )
        return True

    def _meter_estimate(
        self, owner: Owner, batch_id: str, endpoint: str, state: dict[str, Any], at: float
    ) -> BatchCharge:
        """Bill a batch whose output can never be read (deleted upstream, past the gateway) from what its create
        estimated: per model, every line's prompt and the most output it allowed, at batch prices, flagged
        ``estimated``; what an earlier partial read metered stays (event ids differ, so this errs towards billing)."""
        charge = BatchCharge()
        estimate = state.get("estimate")
        for model, tokens in (estimate if isinstance(estimate, dict) else {}).items():
            if not (isinstance(model, str) and isinstance(tokens, list) and len(tokens) == 2):
                continue
            prompt, worst = (t if isinstance(t, int) and not isinstance(t, bool) else 0 for t in tokens)
            usage = Usage(input_tokens=max(0, prompt), output_tokens=max(0, worst - prompt))
            digest = hashlib.sha256(b"batch-estimate:" + batch_id.encode() + b"\n" + model.encode()).hexdigest()[:32]
            event = _event(
                owner,
                event_id="evt_be" + digest,
                request_id=batch_id[:128],
                at=at,
                endpoint=endpoint,
                model=_text(model),
                status=200,
                usage=usage,
                batch=True,
            )
            event["usage_source"] = "estimated"
            self.metering.spool.append_or_hold(encode(event))
            self.metering.writer.notify()
            measure = Measure(category=event["category"], service_tier="batch")
            cost = self.metering.prices.cost(event["model"], usage, measure=measure, tenant_id=owner.tenant_id, at=at)
            charge.lines += 1
            charge.tokens += usage.total_tokens
            charge.models[event["model"]] = charge.models.get(event["model"], 0) + usage.total_tokens
            charge.nano_usd += cost.total_nusd
        self.estimated_batches += 1
        return charge

    def _line_event(
        self, owner: Owner, batch_id: str, endpoint: str, raw: bytes, at: float, stores: frozenset[str] = frozenset()
    ) -> tuple[UsageEvent, Usage | None, list[tuple[str, str]]] | None:
        """The usage event of one output line, its billable usage (what the upstream reported for it; None for a
        failed request) and the stored objects it made (a Responses line's response and output items, the batch
        owner's as if it had been asked directly), or None for a line without a ``custom_id``."""
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            return None
        response: dict[str, Any] = line["response"] if isinstance(line.get("response"), dict) else {}
        body: dict[str, Any] = response["body"] if isinstance(response.get("body"), dict) else {}
        status = response.get("status_code")
        status = status if isinstance(status, int) and not isinstance(status, bool) and 0 < status < 1000 else 0
        usage = Usage.from_openai(body.get("usage"))
        billable = 0 < status < 400 and usage is not None
        billed = usage if billable else None
        event = _event(
            owner,
            event_id=batch_line_event_id(batch_id, line["custom_id"]),
            request_id=_text(response.get("request_id"), batch_id)[:128] or new_id("req"),
            at=at,
            endpoint=endpoint,
            model=_text(body.get("model")),
            status=status,
            usage=billed,
            batch=True,
            tools=tool_calls_of(body.get("output")) if endpoint == "/v1/responses" else NO_TOOL_CALLS,
        )
        stores_chat = bool(stores) and line_key(line["custom_id"]) in stores
        return event, billed, _stored_objects(endpoint, status, body, stores_chat)

    async def _index_completion(self, owner: Owner, completion_id: str, event: UsageEvent) -> None:
        """A chat completion a batch line stored: listed among the owner's stored chat completions (its metadata
        as the upstream reports it once retrieved; the batch output does not carry it)."""
        if await self.index.get(owner.tenant_id, completion_id) is not None:
            return
        model = event["model"]
        created = int(event["occurred_at"])
        await self.index.add(
            completion_entry(owner, completion_id, created, model=model, response_model=model, metadata={})
        )

    async def _index_file(self, owner: Owner, file_id: str, upstream: Upstream, keys: dict[str, str] | None) -> None:
        """A batch's output or error file, listed and counted like the tenant's uploads."""
        if await self.index.get(owner.tenant_id, file_id) is not None:
            return
        status, answer = await get_json(self.http, upstream, keys, "GET", RETRIEVE_FILE.upstream({"file_id": file_id}))
        if status == 200 and answer is not None and answer.get("id") == file_id:
            entry = file_entry(owner, answer)
            if entry is not None:
                await self.index.add(entry)

    # -- background responses --------------------------------------------------------------------------------------

    async def settle_response_before_deleting(self, tenant_id: str, response_id: str) -> bool:
        """A response of the tenant is about to be deleted: if it is a background response not settled yet, it is
        looked at now and settled if it has ended (its usage is read before it is gone). False if it is still
        unsettled (queued or in progress, or the upstream could not be asked just now): then it must not go."""
        row = await self.index.get(tenant_id, response_id)
        if row is None or row.kind != "response" or row.settled_at is not None:
            return True
        await self.poll(row, counted=False)
        row = await self.index.get(tenant_id, response_id)
        return row is None or row.settled_at is not None

    async def _poll_response(
        self, owner: Owner, row: TenantObject, upstream: Upstream, keys: dict[str, str] | None
    ) -> None:
        path = RETRIEVE_RESPONSE.upstream({"response_id": row.id})
        status, answer = await get_json(self.http, upstream, keys, "GET", path)
        holds = holds_of((row.state or {}).get("holds") or [])
        if status == 404:
            # Deleted upstream past the gateway (its DELETE settles first), e.g. by a tenant in its own account:
            # billed from the worst case admission held (flagged estimated), so deleting it cannot make it free.
            if await self.index.claim_settlement(row.tenant_id, row.id):
                log.warning("objects: background response %s was gone before it was settled", row.id)
                charge = self._meter_vanished(owner, row)
                self.limiter.settle_batch(owner.tenant_id, holds, charge, time.time())
            return
        if status != 200 or answer is None or answer.get("id") != row.id:
            return
        state = answer.get("status")
        await self.index.seen(row.tenant_id, row.id, status=state[:32] if isinstance(state, str) else None)
        if state not in _RESPONSE_ENDED:
            return
        usage = Usage.from_openai(answer.get("usage"))
        if usage is None:
            # Ended without usage (cancelled before it began, failed): nothing to bill, what it held is released.
            if await self.index.claim_settlement(row.tenant_id, row.id):
                self.limiter.settle_batch(owner.tenant_id, holds, BatchCharge(), time.time())
            return
        model = _text(answer.get("model")) or _text((row.state or {}).get("model"))
        completed = answer.get("completed_at")
        at = float(completed) if isinstance(completed, int) and not isinstance(completed, bool) else time.time()
        charge = self._meter_completion(owner, row.id, model, usage, at, tool_calls_of(answer.get("output")))
        if await self.index.claim_settlement(row.tenant_id, row.id):
            self.limiter.settle_batch(owner.tenant_id, holds, charge, at)

    def _meter_vanished(self, owner: Owner, row: TenantObject) -> BatchCharge:
        """Bill a background response that is gone before it was settled from the worst case its create held (its
        prompt and the most output it allowed), flagged ``estimated``; admission keeps it for every background
        response, held against a quota or budget or not. Only a row written before that was kept has none: nothing."""
        state = row.state or {}
        worst = state.get("worst")
        if not (isinstance(worst, list) and len(worst) == 2 and all(type(t) is int and t >= 0 for t in worst)):
            return BatchCharge()
        usage = Usage(input_tokens=worst[0], output_tokens=worst[1])
        return self._meter_completion(owner, row.id, _text(state.get("model")), usage, time.time(), estimated=True)

    def _meter_completion(
        self,
        owner: Owner,
        response_id: str,
        model: str,
        usage: Usage,
        at: float,
        tools: ToolCalls = NO_TOOL_CALLS,
        *,
        estimated: bool = False,
    ) -> BatchCharge:
        """Spool a background response's one completion event (its id is the response's: written once however many
        times this runs) and say what it charges the month."""
        event = _event(
            owner,
            event_id=completion_event_id(response_id),
            request_id=response_id,
            at=at,
            endpoint="/v1/responses",
            model=model,
            status=200,
            usage=usage,
            batch=False,
            tools=tools,
        )
        if estimated:
            event["usage_source"] = "estimated"
        self.metering.spool.append_or_hold(encode(event))
        self.metering.writer.notify()
        measure = Measure(tools=tools_of(event))
        cost = self.metering.prices.cost(model, usage, measure=measure, tenant_id=owner.tenant_id, at=at)
        return BatchCharge(tokens=usage.total_tokens, nano_usd=cost.total_nusd, lines=1)

    # -- tasks -----------------------------------------------------------------------------------------------------

    def _spawn(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as exc:
                # The poller comes back to it: nothing is lost, it is only later.
                log.warning("objects: settling %s failed (%s); the poller retries", key, type(exc).__name__)
            finally:
                self._running.pop(key, None)

        self._running[key] = asyncio.create_task(run())
