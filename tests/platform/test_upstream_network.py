"""End to end with the openai SDK: the gateway reaches an https upstream it can only reach through a company proxy
(with credentials) and whose certificate only a custom CA vouches for; tenants' own base URLs never take the proxy;
``serve`` refuses proxy and trust settings it cannot use, before anything starts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tenantgate.devupstream import DevUpstream
from tests.conftest import UPSTREAM_KEY
from tests.support.dns import TableResolver
from tests.support.gateway import Gateway
from tests.support.proxy import ForwardProxy
from tests.support.scripted import ScriptedUpstream
from tests.support.server import ServedApp
from tests.support.tls import self_signed
from tests.test_cli import _serve_until_it_stops

UPSTREAM = "api.upstream.test"  # only the proxy resolves it
PASSWORD = "pr0xy-s3cret"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[ServedApp, Path]]:
    """The dev upstream over https, with a certificate for UPSTREAM signed by nobody the system trusts."""
    cert, _ = self_signed(tmp_path, hosts=[UPSTREAM])
    upstream = DevUpstream(api_key=UPSTREAM_KEY)
    with ServedApp(upstream, lifespan="off", ssl_certfile=str(cert), ssl_keyfile=str(tmp_path / "key.pem")) as app:
        yield app, cert


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
def test_the_sdk_reaches_an_https_upstream_through_the_company_proxy(
    gateway_factory: Callable[..., Gateway],
    sqlite_url: str,
    tls_upstream: tuple[ServedApp, Path],
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app, cert = tls_upstream
    with ForwardProxy(hosts={UPSTREAM: "127.0.0.1"}, credentials=("gateway", PASSWORD)) as proxy:
        gateway = gateway_factory(
            database_url=sqlite_url,
            upstream_base_url=f"https://{UPSTREAM}:{app.port}/v1",
            upstream_https_proxy=proxy.url,
            upstream_ca_file=cert,
            upstream_http_client=client,
        )
        sdk = gateway.client(gateway.new_key()["key"])
        reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.choices[0].message.content
        chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert {(seen.method, seen.target) for seen in proxy.seen} == {("CONNECT", f"{UPSTREAM}:{app.port}")}
    assert PASSWORD not in caplog.text


def test_a_proxy_that_refuses_the_gateway_is_an_upstream_error_without_its_credentials(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, tls_upstream: tuple[ServedApp, Path]
) -> None:
    app, cert = tls_upstream
    with ForwardProxy(hosts={UPSTREAM: "127.0.0.1"}, credentials=("gateway", "the-right-one")) as proxy:
        gateway = gateway_factory(
            database_url=sqlite_url,
            upstream_base_url=f"https://{UPSTREAM}:{app.port}/v1",
            upstream_https_proxy=proxy.url.replace("the-right-one", PASSWORD),
            upstream_ca_file=cert,
            upstream_max_retries=0,
        )
        response = gateway.http.post(
            gateway.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {gateway.new_key()['key']}"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
        )
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert PASSWORD not in response.text


def test_a_tenants_own_base_url_is_connected_to_directly_never_through_the_proxy(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """Through a proxy, the SSRF guard would check the proxy's address while the proxy resolved the tenant's host."""
    with ForwardProxy() as proxy, ScriptedUpstream() as tenant_endpoint:
        gateway = gateway_factory(
            database_url=sqlite_url,
            upstream_base_url=dev_upstream,
            upstream_http_proxy=proxy.url,
            upstream_https_proxy=proxy.url,
            tenant_upstream_allowed_networks="127.0.0.0/8",
            tenant_upstream_allow_http=True,
        )
        gateway.runtime.upstream_guard.resolver = TableResolver({"llm.tenant.example": ["127.0.0.1"]})
        key = gateway.new_key("byok")
        own = {
            "api_key": "sk-tenant-" + uuid.uuid4().hex,
            "base_url": f"http://llm.tenant.example:{tenant_endpoint.port}/v1",
        }
        stored = gateway.admin("PUT", f"/admin/tenants/{key['tenant_id']}/upstream-keys/default", json=own)
        assert stored.status_code == 200, stored.text
        gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [r.target for r in tenant_endpoint.requests] == ["/v1/chat/completions"]
    assert proxy.seen == []


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (
            {"HTTPS_PROXY": f"socks5://gw:{PASSWORD}@proxy.corp:1080"},
            "HTTPS_PROXY: socks5:// proxies are not supported",
        ),
        ({"TENANTGATE_UPSTREAM_CA_FILE": "/nonexistent/ca.pem"}, "TENANTGATE_UPSTREAM_CA_FILE: cannot load"),
    ],
)  # every other value that cannot be used is refused by the same check: tests/platform/upstream/test_network.py
def test_serve_refuses_network_settings_it_cannot_use_before_starting_anything(
    tmp_path: Path, settings: dict[str, str], said: str
) -> None:
    result = _serve_until_it_stops(tmp_path, **settings)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"configuration error: {said}")
    assert PASSWORD not in result.stdout + result.stderr
    assert not (tmp_path / "tenantgate.db").exists()
