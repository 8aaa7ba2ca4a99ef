"""Threat T6, guessing credentials: failed tenant-key and admin-token authentications are limited per source and
overall, across processes (Redis), with OpenAI-shaped 429s, and never lock out a valid credential."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.prometheus import scrape

LIMITS = {"auth_failures_per_source_per_minute": 5, "auth_failures_per_minute": 1000}


def _guess(gateway: Gateway, n: int, path: str = "/v1/models") -> list[httpx.Response]:
    return [
        gateway.http.get(gateway.url + path, headers={"Authorization": f"Bearer tg-guess{i:040d}"}) for i in range(n)
    ]


@pytest.fixture
def pair(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str, redis_url: str, redis_prefix: str
) -> tuple[Gateway, Gateway]:
    """Two gateway processes' worth of state over one database and one Redis."""
    settings: dict[str, Any] = dict(
        database_url=database_url, upstream_base_url=dev_upstream, redis_url=redis_url, redis_prefix=redis_prefix
    )
    return gateway_factory(**settings, **LIMITS), gateway_factory(**settings, **LIMITS)


def test_guessing_tenant_keys_is_throttled_across_processes(pair: tuple[Gateway, Gateway]) -> None:
    first, second = pair
    valid = first.new_key("real")["key"]
    assert [r.status_code for r in _guess(first, 3)] == [401] * 3
    # The sixth failure, counted in Redis, reaches the limit; it was checked, so it is still a 401.
    assert [r.status_code for r in _guess(second, 3)] == [401, 401, 401]
    # From now on unknown keys are refused unchecked, but for one lookup a second (the trickle a valid key gets
    # in by), which answers 401.
    assert [r.status_code for r in _guess(second, 2)] in ([401, 429], [429, 429])
    refused = _guess(second, 1)[0]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_failed_authentications"  # not a tenant's rate limit
    assert int(refused.headers["retry-after"]) >= 1
    lookups = second.runtime.key_cache.misses
    assert all(r.status_code == 429 for r in _guess(second, 20))
    assert second.runtime.key_cache.misses - lookups <= 2  # refused unchecked: no database lookup per guess
    # Meanwhile the real key keeps working from the same address, in both processes (the SDK retries a 429).
    for gateway in pair:
        client = openai.OpenAI(base_url=gateway.base_url, api_key=valid, max_retries=3)
        assert client.models.list().data


def test_guessing_admin_tokens_never_locks_out_the_admin(pair: tuple[Gateway, Gateway]) -> None:
    first, second = pair
    named = first.admin("POST", "/admin/tokens", json={"name": "ops", "role": "billing"}).json()["token"]
    assert first.admin("GET", "/admin/tenants", headers={"Authorization": f"Bearer {named}"}).status_code == 200
    bad = {"Authorization": "Bearer tga-not-a-token"}
    codes = [first.http.get(first.url + "/admin/tenants", headers=bad).status_code for _ in range(8)]
    # A token that was checked is answered 401, the sixth failure (over the limit) included, so a client never
    # retries one that cannot work; past the limit, unknown tokens are refused unchecked (429) but for one lookup a
    # second.
    assert codes[:6] == [401] * 6 and codes[-1] == 429 and set(codes) == {401, 429}
    codes = [second.http.get(second.url + "/admin/tenants", headers=bad).status_code for _ in range(3)]
    assert codes == [401, 401, 429]  # shared through Redis: its first failure was counted over the limit
    for gateway in pair:  # the bootstrap token and a named token still work from the guesser's address
        assert gateway.admin("GET", "/admin/tenants").status_code == 200
        named_client = httpx.Client(transport=httpx.HTTPTransport(retries=0))
        response = named_client.get(gateway.url + "/admin/tenants", headers={"Authorization": f"Bearer {named}"})
        if response.status_code == 429:  # a process that never saw the token valid: one trickle slot a second
            assert response.headers["retry-after"] == "1"
        else:
            assert response.status_code == 200
    # The proxy's tenant-key surface counts apart from the admin one.
    assert _guess(first, 1)[0].status_code == 401


def test_failures_are_counted_on_metrics_by_surface_and_reason(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, **LIMITS)
    _guess(gateway, 9)
    gateway.http.get(gateway.url + "/admin/tenants")
    metrics = scrape(gateway.url)
    invalid = metrics.total("tenantgate_auth_failures_total", tenantgate_auth_surface="tenant", reason="invalid")
    throttled = metrics.total("tenantgate_auth_failures_total", tenantgate_auth_surface="tenant", reason="throttled")
    # Six failures reach the limit; then one lookup a second gets through, the rest are refused unchecked.
    assert invalid >= 6 and throttled >= 1 and invalid + throttled == 9
    assert metrics.total("tenantgate_auth_failures_total", tenantgate_auth_surface="admin", reason="missing") == 1
    text = metrics.text
    assert "tg-guess" not in text


def test_a_valid_key_is_not_throttled_by_guessing_from_its_address_when_its_cache_entry_expires(
    pair: tuple[Gateway, Gateway],
) -> None:
    """The audit's lockout: once a valid key fell out of the key cache, guesses from the same address (everybody
    behind one ingress) took the source's one lookup a second, and the key got 429s. A key this process found valid
    lately is looked up at once."""
    gateway, _ = pair
    valid = gateway.new_key("real")["key"]
    client = openai.OpenAI(base_url=gateway.base_url, api_key=valid, max_retries=0)
    assert client.models.list().data
    for _ in range(5):
        _guess(gateway, 10)  # the source is over its limit, and keeps failing
        gateway.runtime.key_cache.clear()  # as when the entry's TTL ends
        assert client.models.list().data  # no retry needed: never a 429
    # The guesser is still throttled (but for one lookup a second, which answers 401).
    assert 429 in [r.status_code for r in _guess(gateway, 3)]


def test_a_revoked_admin_token_is_answered_401_not_retried(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, **LIMITS)
    made = gateway.admin("POST", "/admin/tokens", json={"name": "gone", "role": "billing"}).json()
    assert gateway.admin("POST", f"/admin/tokens/{made['id']}/revoke").status_code == 200
    revoked = {"Authorization": f"Bearer {made['token']}"}
    answers = [gateway.http.get(gateway.url + "/admin/tenants", headers=revoked) for _ in range(8)]
    assert [a.status_code for a in answers[:6]] == [401] * 6
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 401} == {"invalid_api_key"}
    throttled = [a for a in answers if a.status_code == 429]
    assert throttled and {a.json()["error"]["code"] for a in throttled} == {"too_many_failed_authentications"}


class _AskedToWait(BaseException):
    """Not an Exception, so the SDK does not take it for a connection error to retry."""


def test_a_revoked_key_used_again_and_again_gets_401_from_the_sdk(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """The SDK retries 429s (honouring retry-after up to a minute): a revoked key's client must be told 401 at once
    and never be asked to wait more than the one second after which its key is looked up again."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, **LIMITS)
    key = gateway.new_key("revoked")
    assert gateway.admin("POST", f"/admin/keys/{key['id']}/revoke").status_code == 200
    seen: list[Any] = []  # the SDK's own httpx's responses

    def answered(response: Any) -> None:
        seen.append(response)
        if response.status_code == 429 and response.headers["retry-after"] != "1":
            raise _AskedToWait(response.headers["retry-after"])  # fail now rather than sleep through it

    http = openai.DefaultHttpxClient(event_hooks={"response": [answered]})
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=2, http_client=http)
    for _ in range(8):
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert [response.status_code for response in seen[:6]] == [401] * 6  # the failure reaching the limit too
    assert {response.headers["retry-after"] for response in seen if response.status_code == 429} <= {"1"}
