"""The Usage and Costs API's contract: buckets, pages, grouping, and clear errors, read with the official SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.metering import admin_sdk, make_event, seed

DAY = 86400
MIDNIGHT = 1_795_046_400  # 2026-11-19 00:00 UTC


@pytest.fixture
def seeded(gateway: Gateway, database_url: str) -> dict[str, Any]:
    """Two tenants; one completion of 10 input tokens per day-part, over three days."""
    a, b = gateway.new_key("alpha"), gateway.new_key("beta")
    events = []
    for day in range(3):
        for hour in (1, 13):
            for owner in (a, b):
                events.append(
                    make_event(
                        tenant_id=owner["tenant_id"],
                        api_key_id=owner["id"],
                        occurred_at=MIDNIGHT + day * DAY + hour * 3600 + 30.5,
                        model="gpt-4o" if hour == 13 else "gpt-4o-mini",
                        response_model="gpt-4o-2024-08-06" if hour == 13 else "gpt-4o-mini-2024-07-18",
                        input_tokens=10,
                        cached_input_tokens=4,
                        output_tokens=5,
                        usage_source="estimated" if day == 2 else "upstream",
                    )
                )
    seed(database_url, events)
    return {"a": a, "b": b}


def _results(page: Any) -> list[Any]:
    return [result for bucket in page.data for result in bucket.results]


def test_daily_buckets_page_through_the_range(gateway: Gateway, seeded: dict[str, Any]) -> None:
    usage = admin_sdk(gateway).admin.organization.usage
    first = usage.completions(start_time=MIDNIGHT, end_time=MIDNIGHT + 3 * DAY, bucket_width="1d", limit=2)
    assert [(b.start_time, b.end_time) for b in first.data] == [
        (MIDNIGHT, MIDNIGHT + DAY),
        (MIDNIGHT + DAY, MIDNIGHT + 2 * DAY),
    ]
    assert first.has_more and first.next_page
    assert [r.num_model_requests for r in _results(first)] == [4, 4]
    second = usage.completions(
        start_time=MIDNIGHT, end_time=MIDNIGHT + 3 * DAY, bucket_width="1d", limit=2, page=first.next_page
    )
    assert [b.start_time for b in second.data] == [MIDNIGHT + 2 * DAY]
    assert not second.has_more and second.next_page is None
    (last,) = _results(second)
    assert (last.input_tokens, last.input_cached_tokens, last.output_tokens) == (40, 16, 20)
    assert last.model_extra == {"output_reasoning_tokens": 0, "estimated_requests": 4}


def test_buckets_snap_to_utc_boundaries_of_their_width(gateway: Gateway, seeded: dict[str, Any]) -> None:
    usage = admin_sdk(gateway).admin.organization.usage
    # 12:00 on day 0 to 12:00 on day 1: the two UTC days that contain it, each whole.
    page = usage.completions(start_time=MIDNIGHT + 12 * 3600, end_time=MIDNIGHT + 36 * 3600, group_by=["model"])
    assert [(b.start_time, b.end_time) for b in page.data] == [
        (MIDNIGHT, MIDNIGHT + DAY),
        (MIDNIGHT + DAY, MIDNIGHT + 2 * DAY),
    ]
    assert {(r.model, r.num_model_requests) for r in page.data[0].results} == {("gpt-4o", 2), ("gpt-4o-mini", 2)}
    # Hour and minute buckets: only the 01:00 events of day 0 (both tenants), in the minute they happened.
    hours = usage.completions(start_time=MIDNIGHT + 3600 + 59, end_time=MIDNIGHT + 7200, bucket_width="1h")
    assert [(b.start_time, [r.num_model_requests for r in b.results]) for b in hours.data] == [(MIDNIGHT + 3600, [2])]
    minutes = usage.completions(start_time=MIDNIGHT + 3600, end_time=MIDNIGHT + 3600 + 120, bucket_width="1m")
    assert [[r.num_model_requests for r in b.results] for b in minutes.data] == [[2], []]


def test_group_by_project_and_key(gateway: Gateway, seeded: dict[str, Any]) -> None:
    a, b = seeded["a"], seeded["b"]
    page = admin_sdk(gateway).admin.organization.usage.completions(
        start_time=MIDNIGHT, end_time=MIDNIGHT + 3 * DAY, bucket_width="1d", group_by=["project_id", "api_key_id"]
    )
    groups = {(r.project_id, r.api_key_id) for r in _results(page)}
    assert groups == {(a["tenant_id"], a["id"]), (b["tenant_id"], b["id"])}
    assert all(r.model is None for r in _results(page))


def test_costs_by_line_item_add_up_to_the_total(gateway: Gateway, seeded: dict[str, Any]) -> None:
    costs = admin_sdk(gateway).admin.organization.usage.costs
    window = {"start_time": MIDNIGHT, "end_time": MIDNIGHT + 3 * DAY}
    total = sum(r.amount.value for r in _results(costs(**window)) if r.amount and r.amount.value)
    items = _results(costs(**window, group_by=["line_item"]))
    assert {r.line_item for r in items} == {
        f"{model}, {part}" for model in ("gpt-4o", "gpt-4o-mini") for part in ("input", "cached input", "output")
    }
    assert sum(r.amount.value for r in items if r.amount and r.amount.value) == pytest.approx(total)
    # 6 gpt-4o-mini requests: 6 x (6 x 0.15 + 4 x 0.075 + 5 x 0.60) / 1e6 USD; 6 gpt-4o: the same at 2.5/1.25/10.
    expected = 6 * (6 * 0.15 + 4 * 0.075 + 5 * 0.60) / 1e6 + 6 * (6 * 2.5 + 4 * 1.25 + 5 * 10) / 1e6
    assert total == pytest.approx(expected)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start_time": MIDNIGHT, "bucket_width": "1d", "limit": 32}, "limit"),
        ({"start_time": MIDNIGHT, "bucket_width": "1m", "limit": 0}, "limit"),
        ({"start_time": MIDNIGHT, "group_by": "user_id"}, "group_by"),
        ({"start_time": MIDNIGHT, "end_time": MIDNIGHT}, "end_time"),
        ({"start_time": MIDNIGHT, "page": "garbage!"}, "page"),
        ({"start_time": MIDNIGHT, "bucket_width": "2d"}, "bucket_width"),
        ({}, "start_time"),
    ],
)
def test_bad_parameters_are_clear_openai_errors(gateway: Gateway, params: dict[str, Any], param: str) -> None:
    response = httpx.get(
        gateway.url + "/v1/organization/usage/completions",
        params=params,
        headers={"Authorization": f"Bearer {gateway.admin_token}"},
    )
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_sdk_raises_its_usual_error_class(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError):
        admin_sdk(gateway).admin.organization.usage.completions(start_time=MIDNIGHT, bucket_width="1h", limit=169)
