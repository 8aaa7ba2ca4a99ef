"""Threat T7, operational data on the tenant surface: metrics list every tenant and its traffic, so they are served
to operators only: on the main port with an admin or billing token, or on a separate listener for Prometheus."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.gateway import Gateway
from tests.support.prometheus import scrape
from tests.support.services import free_port


def test_metrics_are_not_on_the_tenant_surface(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    port = free_port()
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, metrics_port=port)
    key = gateway.new_key("t")
    gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    anonymous = httpx.get(gateway.url + "/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "invalid_request_error"
    as_tenant = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {key['key']}"})
    assert as_tenant.status_code == 401
    assert key["tenant_id"] in scrape(gateway.url).text  # an operator's token
    listener = f"http://127.0.0.1:{port}"
    assert key["tenant_id"] in scrape(listener, token="").text  # Prometheus, on its own port
    assert httpx.get(listener + "/v1/models").status_code == 404  # and nothing else is served there
    assert httpx.get(listener + "/admin/tenants").status_code == 404
