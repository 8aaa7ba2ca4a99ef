"""The limiter's place on the proxy path (an ExchangeHook; see platform/proxy/hooks.py).

``admit``: estimate the request's tokens (prompt + max output tokens), check and charge every limit of the key
and its tenant in one store call, add OpenAI's x-ratelimit-* headers, refuse with 429 (or 503 when Redis is down
and the limiter fails closed). ``settle`` (usage final) or else ``finish`` (the request ended early): release the
in-flight slot and correct the token estimate to the actual usage and charge the spend - in the background, so
no Redis round trip is added before the client's last byte.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from tenantgate import tokens
from tenantgate.core.exchange import BatchAdmission, Exchange, Usage
from tenantgate.core.principal import Principal
from tenantgate.platform.limits.batch import BatchCharge, BatchHold, queue_refusal
from tenantgate.platform.limits.cost import CostEstimator, NoCostKnown
from tenantgate.platform.limits.known import KnownRefusals
from tenantgate.platform.limits.responses import RateLimiterUnavailable, rate_limit_headers, refusal
from tenantgate.settings import Settings
from tenantgate.tenants.limits.checks import SEED, Check, Kind, Settlement, Verdict
from tenantgate.tenants.limits.guard import GuardedStore, LimiterUnavailable
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.outputs import (
    audio_seconds,
    image_output_tokens,
    speech_output_tokens,
    transcription_audio_tokens,
)
from tenantgate.tenants.limits.outputs import max_output_tokens as model_max_output
from tenantgate.tenants.limits.policy import (
    NANO_USD,
    LimitPolicy,
    has_limits,
    month_bounds,
    month_start,
    needs_token_estimate,
)
from tenantgate.tenants.limits.redis import RedisLimitStore
from tenantgate.tenants.metering.ledger import Ledger as MonthLedger
from tenantgate.tenants.metering.ledger import MonthTotals
from tenantgate.wire.resp import RedisError, RespClient

# Request bodies larger than this (bytes as sent) are tokenised in a thread: tiktoken releases the GIL, and a
# 100 kB prompt takes ~5 ms, too long to hold the event loop.
_INLINE_ESTIMATE_BYTES = 32 * 1024
_MAX_OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_GENERATING = frozenset({"chat", "text_completion", "responses"})
_IMAGES = frozenset({"image_generation", "image_edit", "image_variation"})
_TRANSCRIBING = frozenset({"transcription", "translation"})
_RECONCILE_ATTEMPTS = 8  # a correction outlasts a database outage of minutes (waits doubling up to 60 s)
_LEDGER_RETRY_SECONDS = 5.0
log = logging.getLogger("tenantgate.limits")


@dataclass(slots=True)
class Reservation:
    store: RedisLimitStore | MemoryLimitStore
    checks: list[Check]
    lease: str
    tokens: int
    """The TPM estimate (prompt + the output cap if given), corrected to the actual tokens afterwards."""
    admitted_ms: int
    month_tokens: int = 0
    """Worst case held against the monthly token quota (prompt + the most output the request allows)."""
    month_nano_usd: int = 0
    """Worst case held against the monthly budget (that usage at the tenant's price), in nano-USD."""


class Limiter:
    name = "limits"

    def __init__(
        self,
        store: GuardedStore,
        policy: LimitPolicy,
        cost_estimator: CostEstimator | None = None,
        *,
        ledger: MonthLedger | None = None,
        default_max_output_tokens: int = 16_384,
        max_upload_bytes: int = 32 * 1024 * 1024,
        reconcile_after: float = 5.0,
        held_by_batches: Callable[[str, str], Awaitable[int]] | None = None,
        known: KnownRefusals | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.cost_estimator: CostEstimator = cost_estimator or NoCostKnown()
        self.ledger = ledger
        self.default_max_output_tokens = default_max_output_tokens
        self.max_upload_bytes = max_upload_bytes
        """What an upload of unknown length (no Content-Length) may be: the most audio it can hold is bounded by it."""
        self.reconcile_after = reconcile_after
        """Seconds after a seed until it is corrected with what other processes had not written yet."""
        self._reconciling: set[asyncio.Task[None]] = set()
        self._ledger_down_until = 0.0
        # What each admitted request holds until it ends, by exchange (the router's ``finish`` always runs).
        self._held: dict[int, Reservation] = {}
        # What each batch create holds until its batch ends, by exchange, until the request ends (batch.py).
        self._batch_holds: dict[int, BatchHold] = {}
        # What each background response create holds until its response completes, by exchange, until the request
        # ends: then recorded beside the response (platform/background/settlement.py releases it) or released.
        self._background_holds: dict[int, BatchHold] = {}
        self.held_by_batches = held_by_batches
        """What batches and background responses in flight hold on a counter (tenant id, counter key): added when a
        counter is seeded."""
        self.known = known
        """Keys and tenants known to be over a request-count window, refused from memory (known.py)."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        redis: RespClient | None,
        cost_estimator: CostEstimator | None = None,
        ledger: MonthLedger | None = None,
        held_by_batches: Callable[[str, str], Awaitable[int]] | None = None,
    ) -> Limiter:
        """``redis``: the process's client (platform/runtime.py's ``redis_client``, whose timeouts are the limiter's),
        or None for limits kept in process memory."""
        primary = RedisLimitStore(redis, credit=settings.limits_local_credit) if redis is not None else None
        store = GuardedStore(
            primary,
            MemoryLimitStore(),
            fail_open=settings.limits_fail_mode == "open",
            retry_seconds=settings.limits_redis_retry_seconds,
        )
        policy = LimitPolicy(prefix=settings.redis_prefix, lease_ms=int(settings.limits_lease_seconds * 1000))
        return cls(
            store,
            policy,
            cost_estimator,
            ledger=ledger,
            default_max_output_tokens=settings.default_max_output_tokens,
            max_upload_bytes=settings.max_request_body_bytes,
            # Every process's writer flushes within its interval (a batch at most); a margin for a slow database.
            reconcile_after=2.0 + 3 * settings.metering_flush_interval_seconds,
            held_by_batches=held_by_batches,
            known=KnownRefusals() if settings.limits_local_refusals else None,
        )

    def refuse_known(self, exchange: Exchange) -> None:
        """Refuse at once (LocallyRefused) if the caller's key or tenant is known to be over its RPM or RPD; the
        proxy calls this before it reads the body, so such a refusal costs neither the read nor the parse."""
        known = self.known
        if known:
            refused = known.check(exchange.ctx.principal)
            if refused is not None:
                exchange.refused_by = refused.refused_by
                exchange.refused_from_memory = True
                raise refused

    async def admit(self, exchange: Exchange) -> None:
        principal = exchange.ctx.principal
        known = self.known
        self.refuse_known(exchange)
        if exchange.batch is not None:
            await self._admit_batch(exchange, exchange.batch)
            return
        # A token count (POST /v1/responses/input_tokens) does no model work: it holds and spends no tokens, only
        # a request of the key's rates.
        work = exchange.model_work
        payload = exchange.payload or {}
        # A background response's worst case is kept beside it whatever its tenant's limits: it is billed from it
        # (flagged estimated) if the response is gone upstream before it is settled (background/settlement.py).
        background = work and payload.get("background") is True
        limited = has_limits(principal)
        if not limited and not background:
            return
        prompt = await _estimate(exchange) if work and (background or needs_token_estimate(principal)) else 0
        cap = max_output_tokens(payload) if work else 0
        tokens = prompt + cap
        month_tokens, month_nano_usd = tokens, 0
        tenant = principal.tenant_limits
        held = tenant.monthly_token_quota is not None or tenant.monthly_budget_usd is not None
        if held or background:
            # The worst case is held until the request ends: its cap, or the most the model can answer.
            worst, quantity = self._worst_case(exchange, payload, prompt, cap) if work else (Usage(), None)
            if background:
                exchange.background_worst = worst
            if held:
                month_tokens = worst.total_tokens
            if tenant.monthly_budget_usd is not None:
                month_nano_usd = self._worst_case_nano_usd(exchange, worst, quantity)
        if not limited:
            return
        now = time.time()
        checks = self.policy.checks(
            principal, tokens=tokens, now=now, reserve_tokens=month_tokens, reserve_nano_usd=month_nano_usd
        )
        lease = os.urandom(9).hex() if any(c.kind is Kind.CONCURRENCY for c in checks) else ""
        verdict, store = await self._admit(principal, checks, lease, now)
        headers = rate_limit_headers(verdict.states)
        exchange.response_headers.extend(headers)
        if not verdict.admitted:
            # For telemetry's rejections-by-kind: which limit (and level) refused, e.g. "key_rpm".
            failed = [s.check for s in verdict.states if not s.passed]
            exchange.refused_by = ",".join(sorted({f"{c.scope}_{c.name}" for c in failed}))
            if known is not None:
                known.learn(principal, verdict.states)
            raise refusal(verdict.states, principal, exchange.model, headers, month_bounds(now)[1])
        self._held[id(exchange)] = Reservation(
            store, checks, lease, tokens, verdict.now_ms, month_tokens if _has(checks, "monthly_tokens") else 0,
            month_nano_usd if _has(checks, "monthly_budget") else 0,
        )  # fmt: skip

    async def _admit_batch(self, exchange: Exchange, estimate: BatchAdmission) -> None:
        """A batch create: the request's own limits, and the batch's holds on its queues and the month (batch.py)."""
        principal = exchange.ctx.principal
        now = time.time()
        checks = self.policy.checks(
            principal,
            tokens=0,
            now=now,
            reserve_tokens=estimate.month_tokens,
            reserve_nano_usd=estimate.month_nano_usd,
        )
        models: dict[str, str] = {}
        for model, queued in estimate.queue_tokens.items():
            queue = self.policy.batch_queue(principal, model, queued)
            if queue is not None:
                checks.append(queue)
                models[queue.key] = model
        if not checks:
            return
        lease = os.urandom(9).hex() if any(c.kind is Kind.CONCURRENCY for c in checks) else ""
        verdict, store = await self._admit(principal, checks, lease, now)
        headers = rate_limit_headers(verdict.states)
        exchange.response_headers.extend(headers)
        if not verdict.admitted:
            failed = [s for s in verdict.states if not s.passed]
            exchange.refused_by = ",".join(sorted({f"{s.check.scope}_{s.check.name}" for s in failed}))
            if self.known is not None:
                self.known.learn(principal, verdict.states)
            queues = [s for s in failed if s.check.name == "batch_queue"]
            if queues and len(queues) == len(failed):
                base = {name.decode(): value.decode() for name, value in headers}
                raise queue_refusal(queues[0], principal, models[queues[0].check.key], base, 60.0)
            raise refusal(verdict.states, principal, exchange.model, headers, month_bounds(now)[1])
        self._held[id(exchange)] = Reservation(
            store, [c for c in checks if c.kind is not Kind.COUNTER], lease, 0, verdict.now_ms
        )
        hold = BatchHold(store, [c for c in checks if c.kind is Kind.COUNTER and c.amount > 0])
        self._batch_holds[id(exchange)] = hold
        estimate.holds = hold.as_state()

    def settle_batch(self, tenant_id: str, holds: list[tuple[Check, int]], charge: BatchCharge, at: float) -> None:
        """A batch ended: release what it held, charge what its lines used to the month it ended in."""
        settlement = Settlement(counter_deltas=[(check, -amount, amount) for check, amount in holds])
        if charge.tokens:
            tokens = self.policy.month_counter(tenant_id, "monthly_tokens", at)
            settlement.counter_deltas.append((tokens, charge.tokens, 0))
        if charge.nano_usd:
            spend = self.policy.month_counter(tenant_id, "monthly_budget", at)
            settlement.counter_deltas.append((spend, charge.nano_usd, 0))
        self.store.settle_soon(settlement, self.store.primary or self.store.fallback)

    def _worst_case(
        self, exchange: Exchange, payload: dict[str, Any], prompt: int, cap: int
    ) -> tuple[Usage, int | None]:
        """The most a request may use: its tokens, and for a family sold by the unit the units where the request
        does not say them (the seconds of an upload); docs/limits.md states each bound."""
        operation, model = exchange.operation, exchange.model or ""
        if operation in _GENERATING:
            output = cap or answers(payload) * model_max_output(model, self.default_max_output_tokens)
            return Usage(input_tokens=prompt, output_tokens=output), None
        if operation in _IMAGES:
            # gpt-image models by their output tokens (DALL-E is priced by the picture: n from the request).
            partials = _count(payload.get("partial_images")) if payload.get("partial_images") else 0
            picture = image_output_tokens(model, payload.get("quality"), payload.get("size"), partials) or 0
            return Usage(input_tokens=prompt, output_tokens=_count(payload.get("n")) * picture), None
        if operation == "speech":
            text = payload.get("input")
            audio = speech_output_tokens(model, len(text) if isinstance(text, str) else 0) or 0
            return Usage(input_tokens=prompt, output_tokens=audio), None  # tts-1: by the character, from the request
        if operation in _TRANSCRIBING:
            seconds = audio_seconds(exchange.body_size or self.max_upload_bytes)
            heard = transcription_audio_tokens(model, seconds)
            if heard is None:
                return Usage(input_tokens=prompt), seconds  # whisper-1: by the second
            output = model_max_output(model, self.default_max_output_tokens)
            return Usage(input_tokens=prompt + heard, input_audio_tokens=heard, output_tokens=output), None
        return Usage(input_tokens=prompt, output_tokens=cap), None  # embeddings and moderations answer no tokens

    async def _admit(
        self, principal: Principal, checks: list[Check], lease: str, now: float, *, dry: bool = False
    ) -> tuple[Verdict, RedisLimitStore | MemoryLimitStore]:
        """Admit (or look, ``dry``), seeding month counters the store does not hold from the ledger first."""
        try:
            verdict, store = await self.store.admit(checks, lease, dry=dry)
            missing = [state.check for state in verdict.states if state.retry_ms == SEED]
            if not missing:
                return verdict, store
            if await self._seed(principal.tenant_id, missing, now, store):
                verdict, store = await self.store.admit(checks, lease, dry=dry)
                if not any(state.retry_ms == SEED for state in verdict.states):
                    return verdict, store
            if not self.store.fail_open:
                raise LimiterUnavailable
            # The ledger cannot be read (database down): the month's quota and budget are not checked meanwhile.
            kept = [check for check in checks if check not in missing]
            return await self.store.admit(kept, lease, dry=dry)
        except LimiterUnavailable:
            raise RateLimiterUnavailable(
                "The gateway cannot check rate limits right now. Please retry shortly.", headers={"retry-after": "1"}
            ) from None

    async def _seed(
        self, tenant_id: str, missing: list[Check], now: float, store: RedisLimitStore | MemoryLimitStore
    ) -> bool:
        """Set missing month counters to the ledger's totals of this month; False if the ledger cannot be read."""
        seeded_at = time.time()
        if self.ledger is None:
            totals = MonthTotals(0, 0)
        elif time.monotonic() < self._ledger_down_until:
            return False
        else:
            try:
                totals = await self.ledger.month_totals(tenant_id, month_start(now))
            except Exception as exc:
                self._ledger_down_until = time.monotonic() + _LEDGER_RETRY_SECONDS
                log.error("limits: the month's usage could not be read to seed a quota (%s)", type(exc).__name__)
                return False
        for check in missing:
            if check.name == "batch_queue":
                value = 0
            else:
                value = totals.tokens if check.name == "monthly_tokens" else totals.cost_nusd
            ledgered, held = value, 0
            if self.held_by_batches is not None:
                try:
                    held = await self.held_by_batches(tenant_id, check.key)
                except Exception as exc:
                    self._ledger_down_until = time.monotonic() + _LEDGER_RETRY_SECONDS
                    log.error("limits: what batches hold could not be read to seed a counter (%s)", type(exc).__name__)
                    return False
            seeded = await _seed_counter(check, value + held, held, store)
            if seeded and self.ledger is not None and check.name != "batch_queue":
                self._reconcile_later(tenant_id, check, seeded_at, ledgered, store)
        return True

    def _reconcile_later(
        self, tenant_id: str, check: Check, seeded_at: float, ledgered: int, store: RedisLimitStore | MemoryLimitStore
    ) -> None:
        """Correct a counter this process seeded once the other processes have written what they had spooled when it
        was seeded (their writers flush every ``metering_flush_interval_seconds``): usage admitted before the seed
        that the seed could not see (the counter that held it was lost) is added then."""
        task = asyncio.get_running_loop().create_task(self._reconcile(tenant_id, check, seeded_at, ledgered, store))
        self._reconciling.add(task)
        task.add_done_callback(self._reconciling.discard)

    async def _reconcile(
        self, tenant_id: str, check: Check, seeded_at: float, ledgered: int, store: RedisLimitStore | MemoryLimitStore
    ) -> None:
        assert self.ledger is not None
        delay = self.reconcile_after
        for attempt in range(_RECONCILE_ATTEMPTS):
            await asyncio.sleep(delay)
            try:
                totals = await self.ledger.month_totals(tenant_id, month_start(seeded_at), settled_before=seeded_at)
                break
            except Exception as exc:
                log.error(
                    "limits: the month's usage could not be read to correct a seeded counter (%s; attempt %d of %d)",
                    type(exc).__name__,
                    attempt + 1,
                    _RECONCILE_ATTEMPTS,
                )
                delay = min(2 * delay, 60.0)  # the database is down: try again later, not never
        else:
            return
        # What ended before the seed, as the ledger knows it now, beyond what the seed counted; only ever added.
        # Requests still running at the seed are left out: they settle against the new counter (docs/limits.md).
        missed = (totals.tokens if check.name == "monthly_tokens" else totals.cost_nusd) - ledgered
        if missed > 0:
            log.warning("limits: %s of tenant %s was seeded %d short; corrected", check.name, tenant_id, missed)
            self.store.settle_soon(Settlement(counter_deltas=[(check, missed, 0)]), store)

    async def settle(self, exchange: Exchange) -> None:
        self._close_out(exchange)

    def finish(self, exchange: Exchange) -> None:
        self._close_out(exchange)
        hold = self._batch_holds.pop(id(exchange), None) if self._batch_holds else None
        if hold is not None and not (exchange.batch is not None and exchange.batch.kept):
            # The batch was not created (or not recorded): nothing holds on to its queue and month any more.
            release = Settlement(counter_deltas=[(check, -check.amount, check.amount) for check in hold.checks])
            self.store.settle_soon(release, hold.store)
        hold = self._background_holds.pop(id(exchange), None) if self._background_holds else None
        if hold is not None and not exchange.background_holds_kept:
            # The background response was not recorded: nothing watches it, so nothing holds for it.
            release = Settlement(counter_deltas=[(check, -check.amount, check.amount) for check in hold.checks])
            self.store.settle_soon(release, hold.store)

    def _close_out(self, exchange: Exchange) -> None:
        reservation = self._held.pop(id(exchange), None)
        if reservation is None:
            # No admission of its own (a read): a background response's completion it shows is charged to the
            # month once, by the settlement that claims it (platform/background/settlement.py).
            return
        actual = _actual_tokens(exchange, reservation.tokens)
        settlement = Settlement(lease=reservation.lease, admitted_ms=reservation.admitted_ms)
        # A background response accepted upstream keeps its month holds until it completes (handed over to its
        # record in the object index); a background completion seen here (on its create stream, a retrieve, a
        # cancel) is charged to the month once, by the settlement that claims it: here only holds are released.
        queued = _background_create(exchange)
        settled_elsewhere = queued or exchange.event_id is not None
        kept: list[Check] = []
        for check in reservation.checks:
            if check.kind is Kind.CONCURRENCY:
                settlement.release.append(check)
            elif check.name == "tpm" and actual != reservation.tokens:
                settlement.window_deltas.append((check, actual - reservation.tokens))
            elif check.name in ("monthly_tokens", "monthly_budget"):
                tokens = check.name == "monthly_tokens"
                held = reservation.month_tokens if tokens else reservation.month_nano_usd
                if queued and held > 0:
                    kept.append(replace(check, amount=held))
                elif settled_elsewhere:
                    settlement.counter_deltas.append((check, -held, held))
                else:
                    used = actual if tokens else self._cost_nano_usd(exchange)
                    settlement.counter_deltas.append((check, used - held, held))
        if kept:
            hold = BatchHold(reservation.store, kept)
            self._background_holds[id(exchange)] = hold
            exchange.background_holds = hold.as_state()
        self.store.settle_soon(settlement, reservation.store)

    def _cost_nano_usd(self, exchange: Exchange) -> int:
        try:
            cost = self.cost_estimator.cost_usd(exchange)
        except Exception:
            return 0
        return _nano_usd(cost, ROUND_HALF_UP)

    def _worst_case_nano_usd(self, exchange: Exchange, usage: Usage, quantity: int | None) -> int:
        try:
            cost = self.cost_estimator.worst_case_usd(exchange, usage, quantity)
        except Exception:
            return 0
        return _nano_usd(cost, ROUND_CEILING)

    async def peek(self, principal: Principal) -> Verdict:
        """The current state of every limit of ``principal``, charging nothing."""
        now = time.time()
        checks = self.policy.checks(principal, tokens=0, now=now, peek=True)
        verdict, _ = await self._admit(principal, checks, "", now, dry=True)
        return verdict

    async def close(self) -> None:
        for task in list(self._reconciling):
            task.cancel()
        await self.store.close()


def _nano_usd(cost: Decimal | None, rounding: str) -> int:
    """``cost`` in whole nano-USD: exact for the price table's costs (whole nano-USD, as the ledger stores them),
    rounded like the table rounds (a worst case upwards) for an estimator that is finer."""
    if not isinstance(cost, Decimal) or cost <= 0:
        return 0
    return int((cost * NANO_USD).to_integral_value(rounding=rounding))


async def _seed_counter(check: Check, value: int, held: int, store: RedisLimitStore | MemoryLimitStore) -> bool:
    """Seed ``check`` in ``store`` (``held`` of ``value`` held by batches); True if this call set it (not another
    process first, and Redis answered)."""
    if isinstance(store, MemoryLimitStore):
        return store.seed_now(check, value, held)
    try:
        return await store.seed(check, value, held)
    except (RedisError, OSError, TimeoutError):
        return False  # the next call to Redis finds it failing, as the guard does for any other call


def _background_create(exchange: Exchange) -> bool:
    """A background response the upstream accepted (queued): its work is done, and billed, after this request."""
    return (
        exchange.path == "/v1/responses"
        and exchange.response_id is not None
        and 0 < exchange.status < 400
        and exchange.withheld is None
        and (exchange.payload or {}).get("background") is True
    )


def _has(checks: list[Check], name: str) -> bool:
    return any(check.name == name for check in checks)


async def _estimate(exchange: Exchange) -> int:
    """The prompt's tokens, estimated."""
    payload, model = exchange.payload, exchange.model
    if not payload:
        return 0
    if exchange.body_size > _INLINE_ESTIMATE_BYTES:
        prompt = await asyncio.to_thread(tokens.estimate_prompt_tokens, payload, model)
    else:
        prompt = tokens.estimate_prompt_tokens(payload, model)
    return prompt


def max_output_tokens(payload: dict[str, Any]) -> int:
    """The most output tokens a request allows: the largest cap it gives, times the answers it asks for
    (``answers``); 0 when it gives no cap. The fields' types were checked at the door (proxy/references.py)."""
    caps = [v for f in _MAX_OUTPUT_FIELDS if isinstance(v := payload.get(f), int) and v > 0]
    if not caps:
        return 0
    return max(caps) * answers(payload)


def answers(payload: dict[str, Any]) -> int:
    """How many answers a request generates: ``n`` (or ``best_of`` for completions, which generates that many) for
    each of its prompts. A legacy completion's ``prompt`` may be a list of prompts (strings or token lists), each
    answered ``n`` times; a single list of token ids is one prompt."""
    per_prompt = max(_count(payload.get("n")), _count(payload.get("best_of")))
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        return per_prompt * len(prompt)
    return per_prompt


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _actual_tokens(exchange: Exchange, estimate: int) -> int:
    """Tokens the request really used: the upstream's (or the forwarder's estimated) usage; none if it failed."""
    if exchange.usage is not None:
        return exchange.usage.total_tokens
    if exchange.reached_upstream and 0 < exchange.status < 400 and not exchange.error_type:
        return estimate  # an answer without usage: keep the estimate
    return 0
