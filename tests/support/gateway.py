"""A handle on a served gateway: admin helpers and SDK clients for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from tenantgate.platform.runtime import Runtime
from tenantgate.settings import Settings


class _SdkHttpClient(openai.DefaultHttpxClient):
    """What the SDK builds for itself when given no client (closed with it, or when garbage). Its TLS context is the
    process's shared one (tests/support/client_tls.py)."""

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                self.close()


class _AsyncSdkHttpClient(openai.DefaultAsyncHttpxClient):
    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self.aclose())


@dataclass
class Gateway:
    url: str
    admin_token: str
    settings: Settings
    # In-process gateways only (None for servers run as subprocesses).
    runtime: Runtime = None  # type: ignore[assignment]
    loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
    # One client for every admin call.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30), repr=False)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def create_tenant(self, name: str, **fields: Any) -> dict[str, Any]:
        response = self.admin("POST", "/admin/tenants", json={"name": name, **fields})
        assert response.status_code == 201, response.text
        tenant: dict[str, Any] = response.json()
        return tenant

    def create_key(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        response = self.admin("POST", f"/admin/tenants/{tenant_id}/keys", json=fields)
        assert response.status_code == 201, response.text
        key: dict[str, Any] = response.json()
        return key

    def new_key(self, tenant_name: str = "acme", **key_fields: Any) -> dict[str, Any]:
        """A fresh tenant (unique name derived from ``tenant_name``) with one key."""
        import uuid

        tenant = self.create_tenant(f"{tenant_name}-{uuid.uuid4().hex[:8]}")
        return self.create_key(tenant["id"], **key_fields)

    def client(self, key: str, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        if "http_client" not in kwargs:
            timeout = kwargs.get("timeout", openai.DEFAULT_TIMEOUT)
            kwargs["http_client"] = _SdkHttpClient(base_url=self.base_url, timeout=timeout)
        return openai.OpenAI(base_url=self.base_url, api_key=key, **kwargs)

    def async_client(self, key: str, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        if "http_client" not in kwargs:
            timeout = kwargs.get("timeout", openai.DEFAULT_TIMEOUT)
            kwargs["http_client"] = _AsyncSdkHttpClient(base_url=self.base_url, timeout=timeout)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, **kwargs)
