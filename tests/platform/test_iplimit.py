"""The per-IP throttle of the admin surface (slowapi) applies to router routes and nowhere else."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.gateway import Gateway


def test_admin_surface_is_throttled_per_ip_across_its_routes(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=database_url, upstream_base_url=dev_upstream, admin_ip_rate_limit="4/minute")
    key = gateway.new_key()  # two admin calls: create tenant, create key
    assert gateway.admin("GET", f"/admin/keys/{key['id']}/limits").status_code == 200
    # Failed authentication counts too: that is what slows down guessing the admin token.
    assert httpx.get(gateway.url + f"/admin/keys/{key['id']}/limits").status_code == 401
    throttled = gateway.admin("POST", "/admin/tenants", json={"name": "one-too-many"})
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "rate_limit_exceeded"
    assert "Limit 4/minute" in throttled.json()["error"]["message"]
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert throttled.headers["x-request-id"].startswith("req_")
    # Probes and the proxy are not part of that surface.
    assert httpx.get(gateway.url + "/healthz").status_code == 200
    chat = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key['key']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200
