"""Which proxy an upstream request goes through: HTTPS_PROXY / HTTP_PROXY as URLs, NO_PROXY as Go's net/http reads
it, and values that cannot work refused with a message that shows no credential."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate.wire.proxy import ProxyConfig, ProxyURL

PASSWORD = "pr0xy-s3cret"


def test_proxy_urls_that_cannot_work_are_refused_without_echoing_credentials() -> None:
    for raw, says in [
        (f"https://u:{PASSWORD}@proxy.corp:3128", "https:// proxies are not supported"),
        (f"socks5://u:{PASSWORD}@proxy.corp:1080", "socks5:// proxies are not supported"),
        (f"http://u:{PASSWORD}@proxy.corp:3128/path", "without a path"),
        (f"http://u:{PASSWORD}@:3128", "names no proxy host"),
        (f"http://u:{PASSWORD}@proxy.corp:99999", "not a valid proxy URL"),
    ]:
        with pytest.raises(ValueError, match=says) as refused:
            ProxyConfig.parse(https_proxy=raw)
        assert PASSWORD not in str(refused.value) and str(refused.value).startswith("HTTPS_PROXY")


def test_a_proxy_url_names_host_port_and_credentials_and_shows_no_secret() -> None:
    proxy = ProxyURL.parse("proxy.corp:3128", "HTTP_PROXY")  # no scheme: http
    assert (proxy.host, proxy.port, proxy.authorization) == ("proxy.corp", 3128, None)
    secret = ProxyURL.parse(f"http://me%40corp:{PASSWORD}@proxy.corp", "HTTPS_PROXY")
    assert secret.port == 80 and secret.login == "me@corp"
    assert secret.authorization == "Basic " + base64.b64encode(f"me@corp:{PASSWORD}".encode()).decode()
    assert PASSWORD not in str(secret) + repr(secret) + repr(ProxyConfig(https=secret))


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "proxied"),
    [
        ("", "api.openai.com", 443, True),
        ("*", "api.openai.com", 443, False),
        ("openai.com", "api.openai.com", 443, False),  # a domain and its subdomains
        ("openai.com", "openai.com", 443, False),
        (".openai.com", "openai.com", 443, True),  # a leading dot: subdomains only
        (".openai.com", "api.openai.com", 443, False),
        ("*.openai.com", "api.openai.com", 443, False),
        ("penai.com", "api.openai.com", 443, True),  # a suffix is not a domain
        ("OpenAI.COM", "api.openai.com", 443, False),
        ("openai.com:8443", "api.openai.com", 443, True),  # a port narrows the entry
        ("openai.com:443", "api.openai.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, False),
        ("10.0.0.0/8", "11.1.2.3", 443, True),
        ("10.1.2.3", "10.1.2.3", 443, False),
        ("fd00::/8, other.example", "fd00::1", 443, False),
        ("[fd00::1]:443", "fd00::1", 443, False),
        ("", "localhost", 443, False),  # loopback is never proxied
        ("", "127.0.0.9", 443, False),
        ("", "::1", 443, False),
    ],
)
def test_no_proxy(no_proxy: str, host: str, port: int, proxied: bool) -> None:
    config = ProxyConfig.parse(https_proxy="http://proxy.corp:3128", no_proxy=no_proxy)
    assert config is not None
    assert (config.route(True, host, port) is not None) is proxied


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join)


@settings(max_examples=300, deadline=None, database=None)
@given(host=DOMAIN, entries=st.lists(st.tuples(st.booleans(), DOMAIN), max_size=4))
def test_a_host_bypasses_the_proxy_exactly_when_an_entry_names_it_or_a_parent(
    host: str, entries: list[tuple[bool, str]]
) -> None:
    no_proxy = ",".join(("." if dot else "") + domain for dot, domain in entries)
    config = ProxyConfig.parse(http_proxy="http://proxy.corp", no_proxy=no_proxy)
    assert config is not None
    expected_direct = (
        host == "localhost"
        or host.endswith(".localhost")
        or any((host == domain and not dot) or host.endswith("." + domain) for dot, domain in entries)
    )
    assert (config.route(False, host, 80) is None) is expected_direct


@settings(max_examples=300, deadline=None, database=None)
@given(raw=st.text(max_size=60), no_proxy=st.text(max_size=60))
def test_any_proxy_setting_is_either_used_or_refused_with_a_value_error(raw: str, no_proxy: str) -> None:
    try:
        config = ProxyConfig.parse(http_proxy=raw, https_proxy=raw, no_proxy=no_proxy)
    except ValueError:
        return
    if config is not None:
        config.route(True, "api.openai.com", 443)
