"""Threat T1, caller strings in upstream URLs: whatever path, query or body a tenant sends, the upstream receives only
the (method, path template) pairs the matched route may produce, with one-segment identifiers of the strict grammar,
only the query parameters OpenAI defines for the route, and stored-object ids the caller owns.

Generated with hypothesis over paths (dot-segments in every encoding: single, double, mixed case, overlong UTF-8,
Unicode dots, backslashes, ``;`` parameters, ``?`` and ``#``), query strings and body fields; checked at a recording
upstream, directly and behind nginx normalizing dot-segments (the setting in which the review read another tenant's
response through ``GET /v1/models/..%2Fresponses%2F<id>``).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate.platform.proxy.routes import ALL_ROUTES, Route
from tenantgate.platform.upstream.paths import SEGMENT
from tests.support.gateway import Gateway
from tests.support.nginx import NormalizingFront, nginx_available
from tests.support.recording import RecordingUpstream, Seen, serve_recording

OWNED = "resp_ownedByA01"
VICTIM = "resp_victimOfB01"
OWNED_STORE = "vs_ownedByA01"
VICTIM_STORE = "vs_victimOfB01"

_TOKENS = [
    "..", ".", "%2e%2e", "%2E%2e", "%2e", "%2f", "%2F", "%252e%252e", "%252f", "%5c", "%5C", "\\", ";x=1", "%3b",
    "?", "%3f", "%3F", "#", "%23", "%c0%ae%c0%ae", "%c0%af", "%e2%80%a4", "%ef%bc%8e", "%00", "%20", "@", ":",
    "/", "//", OWNED, VICTIM, "input_items", "cancel", "responses", "models", "gpt-4o-mini", "v1", "x", "%",
    "chat", "completions", "api_key=sk-x", "&", "content", "parts", "complete", "file-x", "batch_x", "upload_x",
    "conversations", "items", "messages", "conv_x", "chatcmpl-x", "msg_x",
    OWNED_STORE, VICTIM_STORE, "vector_stores", "files", "file_batches", "search", "vsfb_x",
]  # fmt: skip
_PREFIXES = ["/v1/models/", "/v1/responses/", f"/v1/responses/{OWNED}/", "/v1/", "/v1/models", "/v1/responses",
             "/v1/files/", "/v1/batches/", "/v1/uploads/", "/v1/files", "/v1/batches", "/v1/chat/completions/",
             "/v1/chat/completions", "/v1/conversations/", "/v1/conversations",
             "/v1/conversations/conv_x/items/", "/v1/vector_stores/",
             f"/v1/vector_stores/{OWNED_STORE}/", f"/v1/vector_stores/{VICTIM_STORE}/",
             "/v1/vector_stores"]  # fmt: skip
_QUERIES = ["", "api_key=sk-x", "include[]=x", "after=%2F..%2F", "limit=1&limit=2", "stream=true", "%2e%2e=1",
            "order=asc&api-version=1", "a=%26b%3Dc", "include=file_search_call.results", "metadata[k]=v",
            "model=gpt-4o"]  # fmt: skip

paths = st.builds(
    lambda prefix, parts: prefix + "".join(parts),
    st.sampled_from(_PREFIXES),
    st.lists(st.sampled_from(_TOKENS), max_size=6),
)
methods = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"])
queries = st.lists(st.sampled_from(_QUERIES), max_size=3).map(lambda q: "&".join(x for x in q if x))


_ENCODED_SEGMENT = r"[A-Za-z0-9._%-]+"


def one_segment(encoded: str) -> str:
    """The identifier an encoded path segment carries; fails unless it is exactly one grammar segment, encoded."""
    value = unquote(encoded)
    assert SEGMENT.fullmatch(value) and quote(value, safe="") == encoded, f"not one encoded segment: {encoded!r}"
    return value


def _pattern(route: Route) -> re.Pattern[str]:
    template = re.escape(route.template).replace(r"\{", "{").replace(r"\}", "}")
    return re.compile("^" + re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{_ENCODED_SEGMENT})", template) + "$")


_ALLOWED = [(route, _pattern(route)) for route in ALL_ROUTES]


def assert_allowed(seen: Seen, owned: set[str]) -> None:
    """One upstream request: a route's template with grammar segments, its own query names, owned ids only."""
    for route, pattern in _ALLOWED:
        match = pattern.match(seen.raw_path)
        if route.method == seen.method and match:
            names = {name for name, _ in parse_qsl(seen.query, keep_blank_values=True)}
            assert names <= route.query, f"{seen} forwards query parameters {names - route.query}"
            values = {name: one_segment(value) for name, value in match.groupdict().items()}
            for name in (
                "response_id", "file_id", "batch_id", "upload_id", "completion_id", "conversation_id", "vector_store_id"
            ):  # fmt: skip
                named = values.get(name)
                assert named is None or named in owned, f"{seen} names an object the caller does not own"
            return
    raise AssertionError(f"the upstream received a request no route may produce: {seen}")


def send_raw(url: str, method: str, target: str, key: str, body: bytes = b"") -> int:
    """A request with the target exactly as given (http.client neither normalizes nor re-encodes it)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {key}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture(params=["direct", "behind-normalizing-front"])
def setup(
    request: pytest.FixtureRequest, gateway_factory: Callable[..., Gateway], sqlite_url: str
) -> Iterator[tuple[Gateway, RecordingUpstream, str, set[str]]]:
    """A gateway whose upstream records what it receives; tenant A owns OWNED and OWNED_STORE, tenant B owns VICTIM
    and VICTIM_STORE."""
    if request.param != "direct" and not nginx_available():
        pytest.fail("nginx is needed for the normalizing-front variant (apt-get install nginx)")
    recorder = RecordingUpstream()
    with ExitStack() as stack:
        served = stack.enter_context(serve_recording(recorder))
        base = served.url
        if request.param != "direct":
            base = stack.enter_context(NormalizingFront(served.port)).url
        gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=base + "/v1")
        key_a, key_b = gateway.new_key("a")["key"], gateway.new_key("b")["key"]
        for key, response_id, store_id in ((key_b, VICTIM, VICTIM_STORE), (key_a, OWNED, OWNED_STORE)):
            recorder.next_response_id, recorder.next_vector_store_id = response_id, store_id
            gateway.client(key).responses.create(model="gpt-4o-mini", input="hi")
            gateway.client(key).vector_stores.create(name="x")
        recorder.clear()
        yield gateway, recorder, key_a, {OWNED, OWNED_STORE}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, query=queries)
def test_paths_never_leave_the_route_templates(
    setup: tuple[Gateway, RecordingUpstream, str, set[str]], method: str, path: str, query: str
) -> None:
    gateway, recorder, key, owned = setup
    target = path + ("?" + query if query else "")
    status = send_raw(gateway.url, method, target, key, b'{"model": "gpt-4o-mini", "input": "x"}')
    assert status < 500 or status == 502, f"{method} {target} -> {status}"
    for seen in recorder.seen:
        assert_allowed(seen, owned)
    recorder.clear()


def test_the_review_attacks_reach_nothing(setup: tuple[Gateway, RecordingUpstream, str, set[str]]) -> None:
    """The review's examples: a dot-segment walk to another tenant's response, a query injected with %3F, a query
    string with an api key; the victim's id never reaches the upstream and each gets OpenAI's 404."""
    gateway, recorder, key, _ = setup
    for target in (
        f"/v1/models/..%2Fresponses%2F{VICTIM}",
        f"/v1/models/..%2Fresponses%2F{VICTIM}%2Finput_items",
        f"/v1/models/gpt-4o-mini%3Fx=1%2F..%2F..%2Fresponses%2F{VICTIM}",
        f"/v1/responses/{OWNED}%2F..%2F{VICTIM}",
        f"/v1/responses/{OWNED}/..%2F{VICTIM}",
    ):
        assert send_raw(gateway.url, "GET", target, key) == 404, target
    assert send_raw(gateway.url, "GET", f"/v1/responses/{OWNED}?api_key=sk-x&include[]=a", key) == 200
    assert [(s.method, s.raw_path, s.query) for s in recorder.seen] == [
        ("GET", f"/v1/responses/{OWNED}", "include%5B%5D=a")
    ]


_AZURE_CONFIG = """
upstreams:
  - name: azure
    kind: azure
    base_url: {base}
    api_key: sk-azure
    api_version: "2024-10-21"
default_upstream: azure
"""

models = st.builds(
    lambda parts: "".join(parts),
    st.lists(
        st.sampled_from([*_TOKENS, "gpt-4o-mini", "x/../../../v1/responses#", "a b", "é"]), min_size=1, max_size=5
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=models, path=st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]))
def test_body_models_become_one_deployment_segment_on_azure(
    azure_setup: tuple[Gateway, RecordingUpstream, str], model: str, path: str
) -> None:
    """With an Azure upstream the body's model is a path segment: it can never add a segment, query or fragment."""
    gateway, recorder, key = azure_setup
    import orjson

    status = send_raw(gateway.url, "POST", path, key, orjson.dumps({"model": model, "input": "x", "messages": []}))
    assert status in (200, 400, 404), (model, status)
    deployment = re.compile(rf"^/openai/deployments/(?P<d>{_ENCODED_SEGMENT})/(chat/completions|embeddings)$")
    for seen in recorder.seen:
        match = deployment.match(seen.raw_path)
        assert match or seen.raw_path == "/openai/responses", seen
        assert seen.query == "api-version=2024-10-21", seen
        if match:
            assert one_segment(match.group("d")) == model, seen
    recorder.clear()


@pytest.fixture
def azure_setup(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, tmp_path: Path
) -> Iterator[tuple[Gateway, RecordingUpstream, str]]:
    recorder = RecordingUpstream()
    with serve_recording(recorder) as served:
        config = tmp_path / "routing.yaml"
        config.write_text(_AZURE_CONFIG.format(base=served.url))
        gateway = gateway_factory(database_url=sqlite_url, config_file=config)
        yield gateway, recorder, gateway.new_key("a")["key"]
