"""Tenant isolation: a tenant key sees its own usage on every endpoint and under every filter, nothing else."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx

from tests.support.gateway import Gateway
from tests.support.metering import make_event, seed, tenant_sdk

FAMILIES = {
    "completions": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "moderations": "/v1/moderations",
    "images": "/v1/images/generations",
    "audio_speeches": "/v1/audio/speech",
    "audio_transcriptions": "/v1/audio/transcriptions",
}


def _events(tenant_id: str, key_id: str, tokens: int, at: float) -> list[dict[str, Any]]:
    return [
        make_event(
            tenant_id=tenant_id,
            api_key_id=key_id,
            endpoint=endpoint,
            category=family,
            occurred_at=at,
            input_tokens=tokens,
            output_tokens=tokens,
            quantity=tokens,
        )
        for family, endpoint in FAMILIES.items()
    ]


def _results(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [result for bucket in page["data"] for result in bucket["results"]]


def test_tenant_key_sees_only_its_own_usage_under_every_filter(gateway: Gateway, database_url: str) -> None:
    a, b = gateway.new_key("alpha"), gateway.new_key("beta")
    b_other = gateway.create_key(b["tenant_id"], name="second")
    at = time.time() - 7200
    seed(
        database_url,
        _events(a["tenant_id"], a["id"], 3, at)
        + _events(b["tenant_id"], b["id"], 1_000_000, at)
        + _events(b["tenant_id"], b_other["id"], 1_000_000, at),
    )
    foreign = {b["tenant_id"], b["id"], b_other["id"]}
    window = [("start_time", str(int(at) - 86400)), ("end_time", str(int(time.time()) + 60))]
    projects: list[list[str]] = [[], [a["tenant_id"]], [b["tenant_id"]], [a["tenant_id"], b["tenant_id"]]]
    keys: list[list[str]] = [[], [a["id"]], [b["id"], b_other["id"]], [a["id"], b["id"]]]
    groups = [[], ["project_id"], ["api_key_id"], ["project_id", "api_key_id", "model"]]
    checked = 0
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {a['key']}"}, timeout=30) as http:
        for path, project_ids, key_ids, group_by in itertools.product(
            [*(f"/v1/organization/usage/{f}" for f in FAMILIES), "/v1/organization/costs"], projects, keys, groups
        ):
            if path.endswith("costs"):
                group_by = [g if g != "model" else "line_item" for g in group_by]
            params = window + [("project_ids[]", p) for p in project_ids] + [("api_key_ids[]", k) for k in key_ids]
            params += [("group_by[]", g) for g in group_by]
            response = http.get(path, params=params)
            assert response.status_code == 200, (path, params, response.text)
            results = _results(response.json())
            leaked = {r.get("project_id") for r in results} | {r.get("api_key_id") for r in results}
            assert not leaked & foreign, (path, params)
            visible = (not project_ids or a["tenant_id"] in project_ids) and (not key_ids or a["id"] in key_ids)
            if path.endswith("costs"):
                assert bool(results) == visible, (path, params)
                assert sum(r["amount"]["value"] for r in results) < 0.01, (path, params)
            else:
                assert sum(r["num_model_requests"] for r in results) == (1 if visible else 0), (path, params)
            checked += 1
    assert checked == 7 * 4 * 4 * 4

    # The same through the official SDK: asking for the other tenant's project returns nothing.
    sdk = tenant_sdk(gateway, a["key"]).admin.organization.usage
    page = sdk.completions(start_time=int(at) - 86400, project_ids=[b["tenant_id"]], group_by=["project_id"])
    assert [r for bucket in page.data for r in bucket.results] == []
    mine = sdk.completions(start_time=int(at) - 86400, group_by=["project_id"])
    assert [r.project_id for bucket in mine.data for r in bucket.results] == [a["tenant_id"]]


def test_tenant_keys_cannot_use_the_billing_exports(gateway: Gateway) -> None:
    a = gateway.new_key("alpha")
    for path in ("/admin/usage/events", "/admin/usage/invoices?period=2026-11", "/admin/usage/export.csv?tenant_id=x"):
        response = httpx.get(gateway.url + path, headers={"Authorization": f"Bearer {a['key']}"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_usage_api_refuses_missing_unknown_and_revoked_keys(gateway: Gateway) -> None:
    created = gateway.new_key("alpha")
    url = gateway.url + "/v1/organization/usage/completions?start_time=0"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer tg-unknown-key-000000000000000"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {created['key']}"}).status_code == 200
    gateway.admin("POST", f"/admin/keys/{created['id']}/revoke")
    assert httpx.get(url, headers={"Authorization": f"Bearer {created['key']}"}).status_code == 401
