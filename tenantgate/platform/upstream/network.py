"""How the gateway reaches the operator's upstreams: the TLS trust and the outbound proxy, from the settings, one
policy for the lean client and for aiohttp (docs/upstream-network.md).

Trust: the system's CAs (OpenSSL's default paths, which ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` replace: OpenSSL reads
them itself; they are only checked here) plus ``TENANTGATE_UPSTREAM_CA_FILE`` when set, e.g. a company CA that signs
an internal upstream or a TLS-inspecting proxy. Proxies: ``TENANTGATE_UPSTREAM_HTTPS_PROXY`` /
``..._HTTP_PROXY`` / ``..._NO_PROXY``, by default the standard ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``
(wire/proxy.py). Tenants' own base URLs share the
trust but never a proxy: the SSRF guard checks the address a connection goes to, and through a proxy that address
would be the proxy's, with the tenant's host resolved where no check sees it (docs/decisions/).

A value that cannot work (a missing CA file, an https:// or socks proxy) raises ValueError with one line saying
which setting and why; ``tenantgate serve`` prints it as a configuration error before anything starts.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from tenantgate.settings import Settings
from tenantgate.wire.proxy import ProxyConfig


@dataclass(frozen=True)
class OutboundNetwork:
    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    proxy: ProxyConfig | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundNetwork:
        for variable, is_dir in (("SSL_CERT_FILE", False), ("SSL_CERT_DIR", True)):
            # OpenSSL's own variables, not settings: it reads them; a wrong one would fail every https upstream later.
            value = os.environ.get(variable)
            path = Path(value) if value else None
            if path is not None and not (path.is_dir() if is_dir else path.is_file()):
                kind = "directory" if is_dir else "file"
                raise ValueError(f"{variable}: {path} is not a {kind}; no https upstream could be verified")
        if settings.upstream_ca_file is None:
            context = _system_trust(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        else:
            context = ssl.create_default_context()
            _trust(context, settings.upstream_ca_file)
        proxy = ProxyConfig.parse(
            settings.upstream_http_proxy.get_secret_value(),
            settings.upstream_https_proxy.get_secret_value(),
            settings.upstream_no_proxy,
        )
        return cls(context, proxy)


@functools.lru_cache(maxsize=4)
def _system_trust(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The system's trust, built once per process (per ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, which OpenSSL reads as
    it builds it): building one reads every CA, ~20 ms of CPU. Nothing changes a context once built, so the runtimes
    of one process (tests start hundreds) share it."""
    return ssl.create_default_context()


def _trust(context: ssl.SSLContext, path: Path) -> None:
    try:
        context.load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ValueError(f"TENANTGATE_UPSTREAM_CA_FILE: cannot load {path} as PEM certificates ({reason})") from None
