"""Which outbound proxy, if any, a request to an upstream goes through: ``HTTPS_PROXY``, ``HTTP_PROXY`` and
``NO_PROXY`` as curl and Go's net/http read them (Go's ``httpproxy`` package is the reference for ``NO_PROXY``).

- ``HTTPS_PROXY`` serves https:// upstreams (a CONNECT tunnel: TLS runs end to end, the proxy sees the host name
  only); ``HTTP_PROXY`` serves http:// upstreams (the request goes to the proxy in absolute form).
- A proxy URL is ``http://[user:password@]host[:port]``; without a scheme it is taken as http://; the port defaults
  to 80. Credentials become a ``Proxy-Authorization: Basic`` header and are never shown (``str()`` leaves them out).
  https:// and socks proxies are refused with a message saying so.
- ``NO_PROXY`` is a comma-separated list of host names (``example.com`` matches it and its subdomains,
  ``.example.com`` only its subdomains), IP addresses, CIDR ranges (``10.0.0.0/8``), each optionally with
  ``:port``; ``*`` means no proxy for anything. Loopback (``localhost``, 127.0.0.0/8, ::1) never goes through a
  proxy, as in Go.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast
from urllib.parse import unquote, urlsplit

from tenantgate.wire.httperrors import ClientHttpProxyError, ClientProxyConnectionError, ServerDisconnectedError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProxyURL:
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)
    """The ``Proxy-Authorization`` header's value, when the URL carried credentials."""
    login: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def parse(cls, raw: str, variable: str) -> ProxyURL:
        """``raw`` as the value of ``variable`` (for the messages); ValueError says what is wrong, never the value's
        credentials."""
        text = raw.strip()
        if "://" not in text:
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ValueError(f"{variable} is not a valid proxy URL") from None
        if parts.scheme != "http":
            raise ValueError(
                f"{variable}: {parts.scheme}:// proxies are not supported; use an http:// proxy URL (an https upstream "
                "is still reached through a CONNECT tunnel, TLS end to end)"
            )
        if not parts.hostname:
            raise ValueError(f"{variable} names no proxy host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{variable} must be http://[user:password@]host[:port], without a path")
        login = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        authorization = None
        if login is not None:
            token = base64.b64encode(f"{login}:{password or ''}".encode()).decode("ascii")
            authorization = f"Basic {token}"
        return cls(parts.hostname, port or 80, authorization, login, password)


@dataclass(frozen=True, slots=True)
class _Bypass:
    """One ``NO_PROXY`` entry."""

    network: IPNetwork | None = None
    domain: str = ""
    subdomains_only: bool = False
    port: int | None = None

    def matches(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        if host == self.domain:
            return not self.subdomains_only
        return host.endswith("." + self.domain)


def _bypass_entry(raw: str) -> _Bypass:
    entry = raw.strip().lower()
    port: int | None = None
    if entry.startswith("["):  # [::1]:8080 or [::1]
        address, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        entry = address
    elif entry.count(":") == 1:  # host:port (more colons: an IPv6 address without a port)
        host, _, port_text = entry.partition(":")
        if port_text.isdigit():
            entry, port = host, int(port_text)
    try:
        return _Bypass(network=ipaddress.ip_network(entry, strict=False), port=port)
    except ValueError:
        pass
    if entry.startswith("*."):
        entry = entry[1:]
    return _Bypass(domain=entry.lstrip("."), subdomains_only=entry.startswith("."), port=port)


def _loopback(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    return host == "localhost" or host.endswith(".localhost") or (address is not None and address.is_loopback)


@dataclass(frozen=True)
class ProxyConfig:
    """The proxies of one process, from its settings; ``route`` is the answer for one upstream."""

    http: ProxyURL | None = None
    https: ProxyURL | None = None
    bypass: tuple[_Bypass, ...] = ()
    bypass_all: bool = False

    @classmethod
    def parse(cls, http_proxy: str = "", https_proxy: str = "", no_proxy: str = "") -> ProxyConfig | None:
        """None when no proxy is set; ValueError (one line, no credentials) when a value cannot be used."""
        http = ProxyURL.parse(http_proxy, "HTTP_PROXY") if http_proxy.strip() else None
        https = ProxyURL.parse(https_proxy, "HTTPS_PROXY") if https_proxy.strip() else None
        if http is None and https is None:
            return None
        entries = [entry for entry in no_proxy.split(",") if entry.strip()]
        bypass_all = any(entry.strip() == "*" for entry in entries)
        return cls(http, https, tuple(_bypass_entry(e) for e in entries if e.strip() != "*"), bypass_all)

    def route(self, is_ssl: bool, host: str, port: int) -> ProxyURL | None:
        """The proxy for an upstream at ``host:port`` (https when ``is_ssl``), or None to connect directly."""
        return _route(self, is_ssl, host.lower().strip("[]"), port)


@lru_cache(maxsize=256)  # a process calls a handful of upstreams
def _route(config: ProxyConfig, is_ssl: bool, host: str, port: int) -> ProxyURL | None:
    proxy = config.https if is_ssl else config.http
    if proxy is None or config.bypass_all:
        return None
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if _loopback(host, address) or any(entry.matches(host, address, port) for entry in config.bypass):
        return None
    return proxy


MAX_CONNECT_ANSWER = 2**16


class _TunnelAnswer(asyncio.Protocol):
    """The proxy's answer to CONNECT: its head, then nothing until the TLS handshake (which takes the transport)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self.received += data
        end = self.received.find(b"\r\n\r\n")
        if end >= 0:
            self.answer.set_result(bytes(self.received[: end + 4]))
        elif len(self.received) > MAX_CONNECT_ANSWER:
            self.answer.set_exception(ClientHttpProxyError(502, "the proxy's answer to CONNECT is too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ServerDisconnectedError("the proxy closed the connection during CONNECT"))


async def open_tunnel(proxy: ProxyURL, host: str, port: int) -> asyncio.Transport:
    """A TCP connection to ``host:port`` through ``proxy`` (HTTP CONNECT), ready for the TLS handshake.

    Fails with ``ClientProxyConnectionError`` when the proxy cannot be reached and ``ClientHttpProxyError`` when it
    answers CONNECT with anything but 2xx (407: credentials missing or refused). The caller bounds the time."""
    loop = asyncio.get_running_loop()
    try:
        transport, answer = await loop.create_connection(_TunnelAnswer, proxy.host, proxy.port)
    except OSError as exc:
        raise ClientProxyConnectionError(proxy.host, proxy.port, exc) from exc
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if proxy.authorization is not None:
        request += f"Proxy-Authorization: {proxy.authorization}\r\n"
    transport.write((request + "\r\n").encode("latin-1"))
    try:
        head = await answer.answer
        status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if not 200 <= status < 300:
            raise ClientHttpProxyError(status, f"the proxy {proxy} refused the tunnel to {authority} ({status})")
        if len(answer.received) > len(head):
            raise ClientHttpProxyError(502, f"the proxy {proxy} sent data before the TLS handshake")
    except BaseException:
        transport.abort()
        raise
    return transport
