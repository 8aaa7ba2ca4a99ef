"""A handle on a served gateway: admin helpers and SDK clients for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import openai

from tenantgate.platform.runtime import Runtime
from tenantgate.settings import Settings


@functools.cache
def _tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The default TLS settings of an httpx client and of an SDK client (httpx2), built once per test process.

    Building them (the system's CA bundle) is nearly all of the ~30 ms of CPU a new client costs, and the suite makes
    a thousand clients for gateways served over plain HTTP on loopback."""
    return httpx.create_ssl_context(), httpx2.create_ssl_context()


class _SdkHttpClient(openai.DefaultHttpxClient):
    """What the SDK builds for itself when given no client (closed with it, or when garbage), with the shared TLS
    settings."""

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
    # One client for every admin call: a new httpx client costs ~100 ms (its TLS context) on a busy machine.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, verify=_tls()[0]), repr=False)

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
            kwargs["http_client"] = _SdkHttpClient(base_url=self.base_url, timeout=timeout, verify=_tls()[1])
        return openai.OpenAI(base_url=self.base_url, api_key=key, **kwargs)

    def async_client(self, key: str, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        if "http_client" not in kwargs:
            timeout = kwargs.get("timeout", openai.DEFAULT_TIMEOUT)
            kwargs["http_client"] = _AsyncSdkHttpClient(base_url=self.base_url, timeout=timeout, verify=_tls()[1])
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, **kwargs)
