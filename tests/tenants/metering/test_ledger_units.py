"""A month's spend, as budgets are seeded from it, includes what is sold by the unit (images, characters, seconds)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.tenants.metering.events import encode
from tenantgate.tenants.metering.ledger import Ledger
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.spool import Spool
from tests.support.metering import make_event, seed

DEC_8 = 1_796_688_000


def _image(tenant: str, occurred_at: float) -> dict[str, object]:
    # Two hd 1024x1792 dall-e-3 images: $0.24, all of it a per-image cost.
    return make_event(
        tenant_id=tenant,
        occurred_at=occurred_at,
        endpoint="/v1/images/generations",
        category="images",
        model="dall-e-3",
        response_model=None,
        quantity=2,
        input_tokens=0,
        output_tokens=0,
        image_size="1024x1792",
        image_quality="hd",
    )


def test_stored_and_spooled_image_costs_count_toward_the_months_spend(database_url: str, tmp_path: Path) -> None:
    seed(database_url, [_image("ten_units", DEC_8 + 60)])
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.append(encode(_image("ten_units", DEC_8 + 120)))  # not in the database yet

    async def totals() -> int:
        engine = create_engine(database_url)
        try:
            ledger = Ledger(create_sessionmaker(engine), spool, PriceBook.load())
            return (await ledger.month_totals("ten_units", DEC_8 - 86400 * 7)).cost_nusd
        finally:
            await engine.dispose()

    try:
        assert asyncio.run(totals()) == 2 * 240_000_000
    finally:
        spool.close()
