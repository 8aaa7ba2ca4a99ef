"""Every answer on /v1 names its request: x-request-id, the caller's own when it sent a valid one."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.gateway import Gateway

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_proxied_refused_and_fallthrough_answers_all_carry_the_request_id(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)
    key = gateway.new_key()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    cases = [
        ("POST", "/chat/completions", auth, CHAT, 200),  # proxied
        ("GET", "/models", auth, None, 200),  # served by the proxy itself
        ("POST", "/chat/completions", {}, CHAT, 401),  # refused before routing
        ("GET", "/files/file-unknown", auth, None, 404),  # falls through to FastAPI
        ("GET", "/me", auth, None, 200),  # FastAPI route behind tenant auth
    ]
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for method, path, headers, body, status in cases:
            mine = client.request(method, path, headers={**headers, "x-request-id": "req-from-caller"}, json=body)
            assert mine.status_code == status, (path, mine.text)
            assert mine.headers.get_list("x-request-id") == ["req-from-caller"], path
            minted = client.request(method, path, headers=headers, json=body)
            assert minted.headers["x-request-id"].startswith("req_"), path
            assert len(minted.headers.get_list("x-request-id")) == 1, path
