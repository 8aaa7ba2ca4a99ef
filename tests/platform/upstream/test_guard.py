"""The SSRF guard's policy: which addresses tenant-set upstreams may reach, and the connection-time check."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from tenantgate.platform.upstream.guard import (
    AddressRefused,
    TenantUpstreamGuard,
    UpstreamURLRefused,
    address_problem,
)
from tests.support.dns import TableResolver

FORBIDDEN = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.0.0.5": "private",
    "172.16.3.4": "private",
    "192.168.0.1": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "fe80::1": "link-local",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.251": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "private",  # reserved 240/4; Python counts it as private first
    "100.64.0.1": "not globally routable",  # shared address space (carrier NAT)
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:169.254.169.254": "link-local",
    "2002:a00:1::": "private",  # 6to4 of 10.0.0.1
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
}
PUBLIC = ["8.8.8.8", "20.61.1.2", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "problem"), FORBIDDEN.items())
def test_internal_addresses_are_refused(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem
    assert not TenantUpstreamGuard().permits(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None
    assert TenantUpstreamGuard().permits(address)


def test_operator_allowlist_opens_only_its_networks() -> None:
    guard = TenantUpstreamGuard([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8")])
    assert guard.permits("127.0.0.1") and guard.permits("::ffff:127.0.0.1") and guard.permits("fd00::5")
    assert not guard.permits("10.0.0.1") and not guard.permits("169.254.169.254") and not guard.permits("::1")


def test_socket_factory_refuses_before_any_socket_exists() -> None:
    guard = TenantUpstreamGuard()
    with pytest.raises(AddressRefused):
        guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    with pytest.raises(AddressRefused):
        guard.socket_factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 443, 0, 0)))
    sock = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 443)))
    sock.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://files.example/v1", "absolute https"),
        ("/v1", "absolute https"),
        ("http://api.example/v1", "must use https"),
        ("https://key@api.example/v1", "credentials"),
        ("https://api.example/v1#top", "fragment"),
    ],
)
def test_url_shapes_refused_without_dns(url: str, reason: str) -> None:
    with pytest.raises(UpstreamURLRefused, match=reason):
        TenantUpstreamGuard().parse(url)


def test_http_is_accepted_only_when_allowed() -> None:
    assert str(TenantUpstreamGuard(allow_http=True).parse("http://api.example/v1")) == "http://api.example/v1"


def test_every_resolved_address_must_pass() -> None:
    resolver = TableResolver({"api.example": ["8.8.8.8"], "split.example": ["8.8.8.8", "fd00::7"]})
    guard = TenantUpstreamGuard(resolver=resolver)
    assert asyncio.run(guard.check("https://API.example/v1/")) == "https://api.example/v1"
    with pytest.raises(UpstreamURLRefused, match=r"fd00::7, which is not allowed \(private address\)"):
        asyncio.run(guard.check("https://split.example/v1"))
