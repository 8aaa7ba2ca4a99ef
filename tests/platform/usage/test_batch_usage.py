"""Batch work in the Usage and Costs APIs, on both backends, read with the official SDK: the batch filter and
group-by of completions, batch line items, and the batch rate (half the list price)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.metering import admin_sdk, make_event, seed

MIDNIGHT = 1_796_688_000  # 2026-12-08 00:00 UTC: priced by a table with batch prices (2026-12-07 on)
END = MIDNIGHT + 86400


@pytest.fixture
def seeded(gateway: Gateway, database_url: str) -> dict[str, Any]:
    """One key: 3 requests of its own and 4 batch lines of gpt-4o-mini, 1,000 input and 200 output tokens each."""
    key = gateway.new_key("batchy")
    events = [
        make_event(
            tenant_id=key["tenant_id"],
            api_key_id=key["id"],
            occurred_at=MIDNIGHT + 3600 + i,
            input_tokens=1000,
            output_tokens=200,
            batch=i >= 3,
        )
        for i in range(7)
    ]
    seed(database_url, events)
    return key


def _results(page: Any) -> list[Any]:
    return [result for bucket in page.data for result in bucket.results]


def test_completions_filter_and_group_by_batch(gateway: Gateway, seeded: dict[str, Any]) -> None:
    usage = admin_sdk(gateway).admin.organization.usage
    grouped = _results(usage.completions(start_time=MIDNIGHT, end_time=END, group_by=["batch"]))
    assert sorted((r.batch, r.num_model_requests, r.input_tokens) for r in grouped) == [
        (False, 3, 3000),
        (True, 4, 4000),
    ]
    only_batch = _results(usage.completions(start_time=MIDNIGHT, end_time=END, batch=True))
    assert [(r.num_model_requests, r.batch) for r in only_batch] == [(4, None)]
    without = _results(usage.completions(start_time=MIDNIGHT, end_time=END, batch=False))
    assert [r.num_model_requests for r in without] == [3]
    with pytest.raises(openai.BadRequestError):
        usage.embeddings(start_time=MIDNIGHT, end_time=END, group_by=["batch"])  # type: ignore[list-item]


def test_batch_work_costs_half_and_is_its_own_line_item(gateway: Gateway, seeded: dict[str, Any]) -> None:
    costs = admin_sdk(gateway).admin.organization.usage.costs
    items = {
        r.line_item: Decimal(str(r.amount.value))
        for r in _results(costs(start_time=MIDNIGHT, end_time=END, group_by=["line_item"]))
    }
    # gpt-4o-mini: $0.15 in / $0.60 out per 1M tokens; the Batch API half of that.
    assert items == {
        "gpt-4o-mini, input": Decimal("0.00045"),
        "gpt-4o-mini, output": Decimal("0.00036"),
        "gpt-4o-mini, input (batch)": Decimal("0.0003"),
        "gpt-4o-mini, output (batch)": Decimal("0.00024"),
    }
