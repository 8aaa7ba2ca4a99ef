"""Usage of a stream that ended before its usage arrived: the client left, the connection broke, the upstream sent
an error event.

A Responses API stream the upstream stored (``store`` not false, its id known from ``response.created``) is asked
for: ``GET /responses/{id}`` on the same upstream, over the same pool, with the same credentials, polled briefly
while it is still in progress, all within ``unfinished_stream_retrieve_seconds``. The usage it reports is billed as
the upstream's own. The retrieve is no model work of the caller's and is not metered.

Anything else is estimated (``usage_source: estimated``): input and delivered text by the token estimate, plus the
reasoning the model did before its first visible token (or before the cut, when none came): the seconds this
attempt waited for it, times the model's reasoning rate. The rate (reasoning tokens per second of waiting for the
first visible token) is learned per model from this process's complete streams, whose usage says how much the
model reasoned; known reasoning families start from a default rate until one was learned.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from tenantgate.core.exchange import Exchange
from tenantgate.platform.proxy.routes import RETRIEVE_RESPONSE
from tenantgate.platform.proxy.sse import StreamScanner
from tenantgate.platform.proxy.usage import estimate_usage, record_answer_object
from tenantgate.platform.upstream import errors
from tenantgate.platform.upstream.client import UpstreamResponse, UpstreamSession
from tenantgate.platform.upstream.paths import InvalidIdentifier
from tenantgate.platform.upstream.registry import Upstream

# Until a model's rate is learned. Reasoning tokens come at the model's output speed; the low end of that is taken,
# so an estimate made before anything was learned errs on the customer's side.
DEFAULT_REASONING_RATE = 50.0
"""Reasoning tokens per second of waiting for the first visible token, for a reasoning family not learned yet."""
# No model reasons this fast: a rate learned from a near-instant upstream (a stub, a cache) must not multiply into
# an absurd bill.
MAX_REASONING_RATE = 5_000.0
REASONING_FAMILIES = ("o1", "o3", "o4", "gpt-5")
_NOT_REASONING = ("gpt-5-chat",)
_MAX_MODELS = 256
_MIN_WAIT = 1e-6  # seconds; a shorter wait is no measurement (and would divide into infinity)
_WEIGHT = 0.2  # of the newest answer in the decayed averages
_IN_PROGRESS = frozenset({"queued", "in_progress"})
_FIRST_POLL = 0.05
_MAX_POLL = 0.5


def is_reasoning_family(model: str | None) -> bool:
    return model is not None and model.startswith(REASONING_FAMILIES) and not model.startswith(_NOT_REASONING)


class ReasoningRates:
    """Reasoning tokens per second of waiting for the first visible token, per model, learned by this process.

    Decayed averages of both (the newest answer weighs ``_WEIGHT``), so one slow queue upstream moves the rate
    a little, not all the way. Bounded: the least recently learned model is forgotten first (model names come
    from requests). Learning is a dict update per complete stream."""

    def __init__(self, max_models: int = _MAX_MODELS) -> None:
        self._max_models = max_models
        self._learned: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def learn(self, model: str, reasoning_tokens: int, waited: float) -> None:
        if waited < _MIN_WAIT:
            return
        known = self._learned.pop(model, None)
        if known is None:
            self._learned[model] = (float(reasoning_tokens), waited)
        else:
            tokens, seconds = known
            tokens += _WEIGHT * (reasoning_tokens - tokens)
            seconds += _WEIGHT * (waited - seconds)
            self._learned[model] = (tokens, seconds)
        if len(self._learned) > self._max_models:
            self._learned.popitem(last=False)

    def rate(self, model: str, *aliases: str | None) -> float:
        """Learned for ``model``; else the default if it (or an alias, e.g. the model the upstream named) is of a
        reasoning family; else 0."""
        known = self._learned.get(model)
        if known is not None:
            return min(known[0] / known[1], MAX_REASONING_RATE)
        if any(is_reasoning_family(name) for name in (model, *aliases)):
            return DEFAULT_REASONING_RATE
        return 0.0

    def estimate(self, waited: float, model: str, *aliases: str | None) -> int:
        """Reasoning tokens spent in ``waited`` seconds; rounded up, so a reasoning model never counts none."""
        rate = self.rate(model, *aliases)
        return math.ceil(rate * waited) if rate > 0 and waited > 0 else 0


@dataclass(frozen=True, slots=True)
class UpstreamAccess:
    """How the attempt that produced a stream reached its upstream: a follow-up request goes the same way."""

    session: UpstreamSession
    upstream: Upstream
    auth: tuple[str, str] | None


class UnfinishedStreams:
    """Settles the usage of streams that ended without it, and learns reasoning rates from those that did not."""

    def __init__(self, retrieve_seconds: float, rates: ReasoningRates | None = None) -> None:
        self.retrieve_seconds = retrieve_seconds
        self.rates = rates or ReasoningRates()

    def learn(self, exchange: Exchange, scanner: StreamScanner) -> None:
        """A stream that reported its usage: how long the model reasoned before its first visible token."""
        usage = exchange.usage
        if usage is None or scanner.visible_at is None or not exchange.attempt_log:
            return
        waited = scanner.visible_at - exchange.attempt_log[-1].started
        self.rates.learn(_model(exchange), usage.reasoning_tokens, waited)

    async def settle(
        self, exchange: Exchange, scanner: StreamScanner, access: UpstreamAccess | None, cut_at: float
    ) -> None:
        """Usage for ``exchange``, whose stream ended at ``cut_at`` without it: the upstream's, or an estimate."""
        background = (exchange.payload or {}).get("background") is True
        if access is not None and self.retrieve_seconds > 0 and _stored(exchange):
            answer = await self._retrieve(exchange, access)
            if answer is not None:
                record_answer_object(exchange, answer)
            if exchange.usage is not None:
                return
        if background:
            # A background response goes on upstream without its stream: it is billed once, when its final usage
            # is first seen (usage.py, _background), so nothing is estimated for it now.
            exchange.model_work = False
            return
        started = exchange.attempt_log[-1].started if exchange.attempt_log else exchange.started
        waited = (scanner.visible_at or cut_at) - started
        reasoning = self.rates.estimate(waited, _model(exchange), exchange.model, exchange.response_model)
        estimate_usage(exchange, scanner.delivered_text(), reasoning_tokens=reasoning)

    async def _retrieve(self, exchange: Exchange, access: UpstreamAccess) -> dict[str, Any] | None:
        """The stored response as the upstream reports it, polled while in progress; None if it cannot say."""
        assert exchange.response_id is not None
        try:
            path = RETRIEVE_RESPONSE.upstream({"response_id": exchange.response_id})
        except InvalidIdentifier:
            return None  # an id no route could name: never sent anywhere
        url = access.upstream.url(path, None)
        headers = [*exchange.upstream_headers, *((access.auth,) if access.auth is not None else ())]
        answer: dict[str, Any] | None = None
        wait = _FIRST_POLL
        try:
            async with asyncio.timeout(self.retrieve_seconds):
                while True:
                    answer = await _get_json(access, url, headers)
                    if answer is None or answer.get("id") != exchange.response_id:
                        return None
                    if answer.get("status") not in _IN_PROGRESS or isinstance(answer.get("usage"), dict):
                        return answer
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, _MAX_POLL)
        except TimeoutError:
            return answer  # still in progress: what it showed last (without usage, so the estimate applies)
        except errors.CLIENT_ERRORS:
            return None


async def _get_json(access: UpstreamAccess, url: str, headers: list[tuple[str, str]]) -> dict[str, Any] | None:
    response: UpstreamResponse | None = None
    try:
        response = await access.session.request(
            "GET", url, headers=headers, allow_redirects=False, timeout=access.upstream.json_timeout
        )
        body = await response.read()
    except BaseException:
        if response is not None:
            response.close()
        raise
    response.release()
    if response.status != 200:
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) and answer.get("object") == "response" else None


def _stored(exchange: Exchange) -> bool:
    """A Responses API create the upstream keeps (and so can report on), whose id the stream told."""
    return (
        exchange.path == "/v1/responses"
        and exchange.response_id is not None
        and (exchange.payload or {}).get("store") is not False
    )


def _model(exchange: Exchange) -> str:
    return exchange.upstream_model or exchange.model or ""
