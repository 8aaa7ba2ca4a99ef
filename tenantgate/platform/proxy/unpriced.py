"""Refusing requests no price covers before they reach the upstream (``TENANTGATE_UNPRICED_MODELS=refuse``).

The runtime composes this hook only when the setting says ``refuse``, so the default (serve them, store their usage
as unpriced) costs nothing per request. It asks the price book the metering writer prices events with, about the
requested model and then the models its routes send upstream: an alias whose deployment model has a price is
priced when its event is written, so it is admitted. What only the answer tells (an image model's token count,
seconds of audio) cannot be judged here; such an exchange is still stored unpriced if its answer lacks them.
"""

from __future__ import annotations

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import BadRequest
from tenantgate.platform.upstream.registry import Routing
from tenantgate.tenants.metering.events import category_of, request_options
from tenantgate.tenants.metering.price_table import Price
from tenantgate.tenants.metering.pricing import UNPRICED_ENDPOINT, UNPRICED_OPTION, UNPRICED_TIER, Measure, PriceBook

_SHOWN_CHARS = 128


class UnpricedRefusal:
    name = "unpriced"

    def __init__(self, prices: PriceBook, routing: Routing) -> None:
        self.prices = prices
        self.routing = routing

    async def admit(self, exchange: Exchange) -> None:
        model = exchange.model
        if not model:  # stored-object reads and model listings name no model, and are not priced by one
            return
        category = category_of(exchange.path)
        options = request_options(category, exchange.payload)
        measure = Measure(
            category=category,
            service_tier=options["service_tier"],
            image_size=options["image_size"],
            image_quality=options["image_quality"],
        )
        names = (model, *(target.model for target in self.routing.targets(model)))
        tenant_id = exchange.ctx.principal.tenant_id
        reason = self.prices.quote(names, measure, tenant_id=tenant_id, at=exchange.started_at)
        if reason is not None:
            raise _refusal(model[:_SHOWN_CHARS], reason, measure)
        if category in _AUDIO:
            price = self._price(names, tenant_id, exchange.started_at)
            if price is not None and (refused := _unmeasured(exchange, category, price)) is not None:
                raise refused

    def _price(self, names: tuple[str, ...], tenant_id: str, at: float) -> Price | None:
        for name in names:
            try:
                return self.prices.price_for(name, tenant_id=tenant_id, at=at)[0]
            except KeyError:
                continue
        return None

    async def settle(self, exchange: Exchange) -> None:
        return None

    def finish(self, exchange: Exchange) -> None:
        return None


_AUDIO = ("audio_speeches", "audio_transcriptions")
_MEASURED_SPEECH = ("pcm", "wav")  # plain audio whose length is known without decoding it (proxy/usage.py)


def _unmeasured(exchange: Exchange, category: str, price: Price) -> BadRequest | None:
    """A request whose answer, in the format it asks for, cannot carry what its price counts (docs/pricing.md): the
    seconds of a whisper-1 ``text`` transcript or ``json``/``text`` translation, the tokens of a gpt-4o transcript
    as ``text``, the audio of a token-priced voice answered as compressed audio. A form field sent after a large
    file part is not seen before the upload streams on; such a request is served and stored unpriced."""
    payload = exchange.payload or {}
    asked = exchange.answer_format if exchange.answer_format is not None else payload.get("response_format")
    if category == "audio_speeches":
        if price.unit == "character" or payload.get("stream_format") == "sse":
            return None
        shape = asked if isinstance(asked, str) and asked else "mp3"
        if shape in _MEASURED_SPEECH:
            return None
        alternatives = '`stream_format: "sse"`, or `response_format` `pcm` or `wav`'
    else:
        shape = asked if isinstance(asked, str) and asked else "json"
        if price.unit == "second":
            unmeasured = ("text", "json") if exchange.path.endswith("/translations") else ("text",)
            alternatives = "`verbose_json`, `srt` or `vtt`" + ("" if "json" in unmeasured else " or `json`")
        else:
            unmeasured, alternatives = ("text",), "`json`"
        if shape not in unmeasured:
            return None
    return BadRequest(
        f"Answers in the format `{shape[:_SHOWN_CHARS]}` do not say how much audio `{exchange.model}` handled, so "
        f"this gateway cannot price them and refuses requests it cannot price. Ask for {alternatives}.",
        param="response_format",
        code="response_format_not_priced",
    )


def _refusal(model: str, reason: str, measure: Measure) -> BadRequest:
    tail = "; this gateway refuses requests it cannot price. Ask its operator to add the price."
    if reason == UNPRICED_TIER:
        tier = measure.service_tier
        return BadRequest(
            f"The model `{model}` has no price for service_tier `{tier}`{tail}",
            param="service_tier",
            code="service_tier_not_priced",
        )
    if reason == UNPRICED_OPTION:
        return BadRequest(
            f"The model `{model}` has no price for images of quality `{measure.image_quality or 'default'}` and "
            f"size `{measure.image_size or 'default'}`{tail}",
            param="size",
            code="image_option_not_priced",
        )
    what = " for this endpoint" if reason == UNPRICED_ENDPOINT else ""
    return BadRequest(f"The model `{model}` has no price{what}{tail}", param="model", code="model_not_priced")
