"""The SSRF guard: where upstream base URLs set by tenants (BYOK) may point.

Operator-configured upstreams are trusted and never pass through here. A tenant's base URL is checked twice: when it
is set (scheme, no credentials, every address its host resolves to), and at every connection, because DNS may
answer differently later (rebinding). The connection check is the socket factory of the separate connector that
serves tenant-set URLs (aio.py), so it sees the address actually connected to, whether it came from the
resolver, from aiohttp's DNS cache, or from an IP literal (which aiohttp never hands to a resolver).

Refused unless an operator allows their network: loopback, private (RFC 1918, fc00::/7), link-local (169.254.0.0/16
with cloud metadata endpoints, fe80::/10), unspecified, multicast, reserved, and any other address that is not
globally routable (shared 100.64.0.0/10, documentation ranges, ...), also when wrapped in an IPv6 form.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # aiohttp and yarl are imported where used: see errors.py
    from aiohappyeyeballs import AddrInfoType
    from aiohttp.abc import AbstractResolver
    from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_TIMEOUT_SECONDS = 5.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ALLOWLIST_HINT = (
    "Tenant upstreams reach such addresses only in networks an operator allows "
    "(TENANTGATE_TENANT_UPSTREAM_ALLOWED_NETWORKS)."
)


class UpstreamURLRefused(ValueError):
    """A tenant base URL the guard does not accept; the message says why and holds no secret."""


class AddressRefused(OSError):
    """Raised by the socket factory. One constant message, so that aiohappyeyeballs re-raises this very exception
    (not a combined OSError) when every address of a host is refused."""

    def __init__(self) -> None:
        super().__init__("connection refused by the tenant upstream address guard")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form reaches: mapped (::ffff:a.b.c.d), 6to4 (2002::/16) or NAT64 (64:ff9b::/96)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: IPAddress) -> str | None:
    """Why a tenant upstream may not connect to ``address`` (e.g. ``"loopback"``), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_problem(embedded)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class TenantUpstreamGuard:
    """The policy (operator allowlist, http or not) and the resolver used to check tenant-set hosts.

    ``resolver`` is what both the check at PUT time and the tenant connector resolve with; tests inject their own.
    The default resolves with the event loop's ``getaddrinfo`` (a worker thread), never blocking the loop.
    """

    def __init__(
        self,
        allowed_networks: Iterable[IPNetwork] = (),
        *,
        allow_http: bool = False,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.allowed_networks = tuple(allowed_networks)
        self.allow_http = allow_http
        self._resolver = resolver

    @property
    def resolver(self) -> AbstractResolver:
        if self._resolver is None:
            import aiohttp

            self._resolver = aiohttp.ThreadedResolver()  # binds the running loop: made on first use
        return self._resolver

    @resolver.setter
    def resolver(self, resolver: AbstractResolver) -> None:
        self._resolver = resolver

    def problem(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused under this policy, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return None
        return address_problem(address)

    def permits(self, host: str) -> bool:
        """Whether a connection to the numeric address ``host`` may be opened; anything unparsable is refused."""
        address = ip_literal(host)
        return address is not None and self.problem(address) is None

    def parse(self, raw: str) -> URL:
        """The checks that need no DNS: a valid absolute URL, https (or allowed http), no credentials, no query."""
        from yarl import URL

        try:
            url = URL(raw.strip())
        except (ValueError, TypeError):
            raise UpstreamURLRefused("base_url is not a valid URL.") from None
        if url.scheme not in ("https", "http") or not url.raw_host:
            raise UpstreamURLRefused("base_url must be an absolute https:// URL with a host.")
        if url.scheme == "http" and not self.allow_http:
            raise UpstreamURLRefused(
                "base_url must use https; plain http is allowed only when TENANTGATE_TENANT_UPSTREAM_ALLOW_HTTP is set."
            )
        if url.raw_user is not None or url.raw_password is not None:
            raise UpstreamURLRefused("base_url must not contain credentials (user:password@); use api_key instead.")
        if url.raw_query_string or url.raw_fragment:
            raise UpstreamURLRefused("base_url must not have a query string or fragment.")
        return url

    async def check(self, raw: str) -> str:
        """The normalized base URL if it is allowed, else ``UpstreamURLRefused``; resolves a host name first."""
        url = self.parse(raw)
        host = url.raw_host or ""
        literal = ip_literal(host)
        if literal is not None:
            problem = self.problem(literal)
            if problem is not None:
                raise UpstreamURLRefused(f"base_url host {host} is not allowed ({problem} address). {_ALLOWLIST_HINT}")
            return str(url).rstrip("/")
        for address in await self._resolve(host, url.port or 443):
            problem = self.problem(address)
            if problem is not None:
                raise UpstreamURLRefused(
                    f"base_url host {host!r} resolves to {address}, which is not allowed ({problem} address). "
                    + _ALLOWLIST_HINT
                )
        return str(url).rstrip("/")

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        if self._resolver is None:  # the default resolver is aiohttp's: imported off the loop, once
            await asyncio.to_thread(importlib.import_module, "aiohttp")
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                results = await self.resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except (OSError, TimeoutError, ValueError):  # ValueError: a name the IDNA codec refuses (empty label...)
            results = []
        addresses = [ip_literal(result["host"]) for result in results]
        if not addresses:
            raise UpstreamURLRefused(f"base_url host {host!r} could not be resolved.")
        if None in addresses:
            raise UpstreamURLRefused(f"base_url host {host!r} resolved to something that is not an IP address.")
        return [address for address in addresses if address is not None]

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """aiohttp's socket factory for tenant-set URLs: the last check, on the address about to be connected to."""
        family, type_, proto, _, sockaddr = addr_info
        if not self.permits(str(sockaddr[0])):
            raise AddressRefused()
        return socket.socket(family=family, type=type_, proto=proto)
