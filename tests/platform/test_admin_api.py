"""The admin API's walking-skeleton routes: create tenants and keys, revoke keys."""

from __future__ import annotations

import httpx

from tests.support.gateway import Gateway


def test_admin_requires_token(gateway: Gateway) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        response = httpx.post(gateway.url + "/admin/tenants", json={"name": "x"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_tenant_key_cannot_use_admin(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    response = httpx.post(
        gateway.url + "/admin/tenants", json={"name": "x"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 401


def test_create_tenant_and_key(gateway: Gateway) -> None:
    tenant = gateway.create_tenant("globex", rpm=60, tpm=10_000)
    assert tenant["id"].startswith("ten_")
    assert (tenant["name"], tenant["status"], tenant["rpm"], tenant["tpm"]) == ("globex", "active", 60, 10_000)
    key = gateway.create_key(tenant["id"], name="ci")
    assert key["key"].startswith("tg-") and len(key["key"]) >= 40
    assert key["key"].startswith(key["prefix"])
    assert (key["tenant_id"], key["name"], key["status"]) == (tenant["id"], "ci", "active")


def test_duplicate_tenant_name_is_409(gateway: Gateway) -> None:
    gateway.create_tenant("initech")
    response = gateway.admin("POST", "/admin/tenants", json={"name": "initech"})
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "name"


def test_key_for_unknown_tenant_is_404(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/tenants/ten_missing/keys", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "tenant_not_found"


def test_revoke_unknown_key_is_404(gateway: Gateway) -> None:
    assert gateway.admin("POST", "/admin/keys/key_missing/revoke").status_code == 404


def test_validation_error_is_readable_422(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/tenants", json={"name": "", "rpm": -1})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "name" in error["message"] and "rpm" in error["message"]


def test_ops_probes(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] is True


def test_readyz_checks_redis(gateway_factory, database_url: str, redis_url: str, dev_upstream: str) -> None:
    up = gateway_factory(database_url=database_url, redis_url=redis_url, upstream_base_url=dev_upstream)
    assert httpx.get(up.url + "/readyz").json()["checks"]["redis"] is True
    down = gateway_factory(database_url=database_url, redis_url="redis://127.0.0.1:9/0", upstream_base_url=dev_upstream)
    response = httpx.get(down.url + "/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] is False


def test_openapi_documents_admin_routes(gateway: Gateway) -> None:
    paths = httpx.get(gateway.url + "/openapi.json").json()["paths"]
    assert {"/admin/tenants", "/admin/tenants/{tenant_id}/keys", "/admin/keys/{key_id}/revoke"} <= set(paths)
