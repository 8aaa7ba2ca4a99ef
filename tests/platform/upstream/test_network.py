"""How the upstream clients reach the operator's upstreams (platform/upstream/network.py): through HTTPS_PROXY /
HTTP_PROXY (a local proxy, tests/support/proxy.py), around them for NO_PROXY, and trusting a custom CA - the lean
client and aiohttp configured from the same settings, each test run on both."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tenantgate.platform.upstream import aio
from tenantgate.platform.upstream.network import OutboundNetwork
from tenantgate.wire import httperrors
from tenantgate.wire.http1 import Http1Client
from tests.conftest import make_settings
from tests.support.proxy import ForwardProxy
from tests.support.scripted import read_body
from tests.support.tls import self_signed

UPSTREAM = "api.upstream.test"  # a name only the proxy can resolve
PASSWORD = "pr0xy-s3cret"
ANSWER = b'{"ok":true}'


async def _answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An upstream that answers every request with ANSWER, keeping the connection."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
            await read_body(reader, fields)
            assert "proxy-authorization" not in fields  # the proxy's business, never the upstream's
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(ANSWER)
            )
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


@asynccontextmanager
async def upstream(tls: ssl.SSLContext | None) -> AsyncIterator[int]:
    server = await asyncio.start_server(_answering, "127.0.0.1", 0, ssl=tls)
    async with server:
        yield server.sockets[0].getsockname()[1]


Client = Callable[[OutboundNetwork], Any]
CLIENTS: dict[str, Client] = {
    "lean": lambda network: Http1Client(10, ssl_context=network.ssl_context, proxy=network.proxy),
    "aiohttp": lambda network: aio.operator_session(10, network),
}


async def _call(client: Any, url: str, **request: Any) -> tuple[int, bytes]:
    response = await client.request("POST", url, data=b"{}", **request)
    try:
        return response.status, await response.read()
    finally:
        response.release()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    return self_signed(tmp_path, hosts=[UPSTREAM])


@pytest.mark.parametrize("kind", CLIENTS)
async def test_https_goes_through_a_connect_tunnel_with_the_proxy_credentials(
    kind: str, certificate: tuple[Path, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    cert_path, server_tls = certificate
    caplog.set_level(logging.DEBUG)
    async with upstream(server_tls) as port:
        with ForwardProxy(hosts={UPSTREAM: "127.0.0.1"}, credentials=("gw", PASSWORD)) as proxy:
            network = OutboundNetwork.from_settings(
                make_settings(upstream_https_proxy=proxy.url, upstream_ca_file=cert_path)
            )
            client = CLIENTS[kind](network)
            try:
                for _ in range(2):
                    assert await _call(client, f"https://{UPSTREAM}:{port}/v1/chat/completions") == (200, ANSWER)
            finally:
                await client.close()
    (connect,) = proxy.seen  # one tunnel, kept alive for the second request
    assert (connect.method, connect.target) == ("CONNECT", f"{UPSTREAM}:{port}")
    assert connect.proxy_authorization == "Basic " + base64.b64encode(f"gw:{PASSWORD}".encode()).decode()
    assert PASSWORD not in caplog.text


def test_the_lean_clients_tunnel_works_on_uvloop_as_served(certificate: tuple[Path, ssl.SSLContext]) -> None:
    """``tenantgate serve`` runs on uvloop, whose start_tls is not asyncio's."""
    import uvloop

    cert_path, server_tls = certificate

    async def scenario() -> tuple[int, bytes]:
        async with upstream(server_tls) as port:
            with ForwardProxy(hosts={UPSTREAM: "127.0.0.1"}) as proxy:
                network = OutboundNetwork.from_settings(
                    make_settings(upstream_https_proxy=proxy.url, upstream_ca_file=cert_path)
                )
                client = CLIENTS["lean"](network)
                try:
                    return await _call(client, f"https://{UPSTREAM}:{port}/v1/chat/completions")
                finally:
                    await client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        assert runner.run(scenario()) == (200, ANSWER)


@pytest.mark.parametrize("kind", CLIENTS)
async def test_http_goes_to_the_proxy_in_absolute_form(kind: str) -> None:
    async with upstream(None) as port:
        with ForwardProxy(hosts={UPSTREAM: "127.0.0.1"}, credentials=("gw", PASSWORD)) as proxy:
            network = OutboundNetwork.from_settings(make_settings(upstream_http_proxy=proxy.url))
            client = CLIENTS[kind](network)
            try:
                for _ in range(2):
                    assert await _call(client, f"http://{UPSTREAM}:{port}/v1/embeddings?x=1") == (200, ANSWER)
            finally:
                await client.close()
    assert [(seen.method, seen.target) for seen in proxy.seen] == [
        ("POST", f"http://{UPSTREAM}:{port}/v1/embeddings?x=1")
    ] * 2
    assert {seen.headers["host"] for seen in proxy.seen} == {f"{UPSTREAM}:{port}"}
    assert all(seen.proxy_authorization and seen.proxy_authorization.startswith("Basic ") for seen in proxy.seen)
    assert proxy.connections == 1  # kept alive through the proxy


@pytest.mark.parametrize("kind", CLIENTS)
async def test_proxy_failures_are_upstream_errors_that_name_no_credential(
    kind: str, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    cert_path, _ = certificate
    with ForwardProxy(credentials=("gw", PASSWORD)) as proxy:
        wrong = proxy.url.replace(PASSWORD, "not-it")
        network = OutboundNetwork.from_settings(make_settings(upstream_https_proxy=wrong, upstream_ca_file=cert_path))
        client = CLIENTS[kind](network)
        try:
            with pytest.raises((httperrors.ClientHttpProxyError, aiohttp.ClientHttpProxyError)) as refused:
                await _call(client, f"https://{UPSTREAM}:443/v1/chat/completions")
        finally:
            await client.close()
    assert refused.value.status == 407
    assert "not-it" not in str(refused.value) and PASSWORD not in str(refused.value)
    assert type(refused.value).__name__ == "ClientHttpProxyError"  # the error.type on spans and metrics, either way

    gone = OutboundNetwork.from_settings(make_settings(upstream_https_proxy=f"http://gw:{PASSWORD}@127.0.0.1:1"))
    client = CLIENTS[kind](gone)
    try:
        with pytest.raises((httperrors.ClientProxyConnectionError, aiohttp.ClientProxyConnectionError)) as unreachable:
            await _call(client, f"https://{UPSTREAM}/v1/chat/completions")
    finally:
        await client.close()
    assert PASSWORD not in str(unreachable.value)


@pytest.mark.parametrize("kind", CLIENTS)
async def test_no_proxy_hosts_are_connected_to_directly(kind: str) -> None:
    with ForwardProxy(hosts={UPSTREAM: "127.0.0.1"}) as proxy:
        settings = make_settings(upstream_https_proxy=proxy.url, upstream_no_proxy=".upstream.test")
        client = CLIENTS[kind](OutboundNetwork.from_settings(settings))
        try:
            # Direct: the gateway's machine must resolve the name itself, and cannot.
            with pytest.raises((httperrors.ClientConnectorError, aiohttp.ClientConnectorError)):
                await _call(client, f"https://{UPSTREAM}/v1/chat/completions")
        finally:
            await client.close()
    assert proxy.seen == []


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_custom_ca_is_trusted_from_the_setting_or_ssl_cert_file(
    kind: str, certificate: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_path, server_tls = certificate
    async with upstream(server_tls) as port:
        url = f"https://127.0.0.1:{port}/v1/chat/completions"
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        for settings, trusted in [
            (make_settings(), False),
            (make_settings(upstream_ca_file=cert_path), True),
            (make_settings(), None),  # SSL_CERT_FILE, below: OpenSSL reads the variable itself
        ]:
            if trusted is None:
                monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
                trusted = True
            client = CLIENTS[kind](OutboundNetwork.from_settings(settings))
            try:
                if trusted:
                    assert await _call(client, url) == (200, ANSWER)
                else:
                    with pytest.raises((httperrors.ClientConnectorError, aiohttp.ClientConnectorError)):
                        await _call(client, url)
            finally:
                await client.close()


def test_trust_files_that_cannot_be_used_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    for settings, says in [
        (make_settings(upstream_ca_file=tmp_path / "missing.pem"), "TENANTGATE_UPSTREAM_CA_FILE: cannot load"),
        (make_settings(upstream_ca_file=not_pem), "TENANTGATE_UPSTREAM_CA_FILE: cannot load"),
    ]:
        with pytest.raises(ValueError, match=says):
            OutboundNetwork.from_settings(settings)
    for variable, value, says in [
        ("SSL_CERT_FILE", tmp_path / "missing.pem", "SSL_CERT_FILE: .* is not a file"),
        ("SSL_CERT_DIR", not_pem, "SSL_CERT_DIR: .* is not a directory"),
    ]:
        with monkeypatch.context() as env:
            env.setenv(variable, str(value))
            with pytest.raises(ValueError, match=says):
                OutboundNetwork.from_settings(make_settings())
