"""The per-IP throttle of the admin surface (slowapi) applies to router routes and nowhere else; a credential this
process knows valid has a budget of its own, so junk from its address cannot lock it out."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.gateway import Gateway


def test_admin_surface_is_throttled_per_ip_across_its_routes(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=database_url, upstream_base_url=dev_upstream, admin_ip_rate_limit="4/minute")
    key = gateway.new_key()  # two admin calls: create tenant, create key
    # Failed authentication counts: that is what slows down guessing the admin token.
    codes = [httpx.get(gateway.url + f"/admin/keys/{key['id']}/limits").status_code for _ in range(4)]
    assert codes == [401] * 4
    throttled = httpx.post(gateway.url + "/admin/tenants", json={"name": "one-too-many"})
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


def test_junk_from_the_admins_address_does_not_lock_out_a_known_credential(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str
) -> None:
    """The audit's lockout: unauthenticated requests from the address of the real admin (an ingress) used up the
    address's budget, and the bootstrap token got 429s."""
    gateway = gateway_factory(database_url=database_url, upstream_base_url=dev_upstream, admin_ip_rate_limit="6/minute")
    named = gateway.admin("POST", "/admin/tokens", json={"name": "ops", "role": "billing"}).json()["token"]
    billing = {"Authorization": f"Bearer {named}"}
    assert httpx.get(gateway.url + "/admin/tenants", headers=billing).status_code == 200  # now known valid
    junk = [httpx.get(gateway.url + "/admin/tenants").status_code for _ in range(8)]
    assert junk[-1] == 429  # the address is over its budget
    for _ in range(4):
        assert gateway.admin("GET", "/admin/tenants").status_code == 200
        assert httpx.get(gateway.url + "/admin/tenants", headers=billing).status_code == 200
    # Each known credential is still limited, on its own budget.
    codes = [gateway.admin("GET", "/admin/tenants").status_code for _ in range(3)]
    assert codes[-1] == 429
    assert httpx.get(gateway.url + "/admin/tenants", headers=billing).status_code == 200
