"""One default TLS context per test process for every httpx client (httpx's and the SDK's httpx2).

httpx builds a new ``SSLContext`` (certifi's CA bundle: 20-30 ms of CPU) for every client made with the default
``verify=True``, and the suite makes thousands of clients, nearly all of them for gateways served over plain HTTP on
loopback: a py-spy profile of a whole run put about 100 s of the suite's CPU in ``ssl.py``. Clients made with the
default now share one context per (``trust_env``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``); any other ``verify`` or a
client certificate still builds its own. httpcore only sets ALPN on a context (the same for every HTTP/1.1 client).
``tests/support/gateway.py``'s admin and SDK clients are made with the default, so they share it too.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx._transports.default as httpx_transports
import httpx2._transports.default as httpx2_transports


def _sharing(create: Callable[..., ssl.SSLContext]) -> Callable[..., ssl.SSLContext]:
    @functools.lru_cache(maxsize=8)
    def default(trust_env: bool, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
        return create(verify=True, cert=None, trust_env=trust_env)

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is True and cert is None:
            return default(trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        return create(verify=verify, cert=cert, trust_env=trust_env)

    return create_ssl_context


def install() -> None:
    """Make this process's httpx clients share their default TLS context (idempotent)."""
    module: ModuleType
    for module in (httpx_transports, httpx2_transports):
        if not getattr(module.create_ssl_context, "_tg_shared", False):
            shared = _sharing(module.create_ssl_context)
            shared._tg_shared = True  # type: ignore[attr-defined]
            module.create_ssl_context = shared  # type: ignore[attr-defined]
