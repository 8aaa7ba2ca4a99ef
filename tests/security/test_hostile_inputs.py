"""Threat T1/T4, a hostile tenant's strings everywhere the gateway reads them: generated bodies, query strings and
headers that once made a 500, a parser differential or a cross-tenant collision. Each must get an OpenAI-shaped
400 (or be neutralized) with nothing reaching the upstream, and well-formed neighbours must still pass."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate.platform.errors import BadRequest
from tenantgate.platform.proxy.references import MAX_DEPTH, check_single_reading, inspect_body
from tests.security.test_object_references import platform as platform  # the recording platform upstream
from tests.support.gateway import Gateway
from tests.support.recording import RecordingUpstream

FIXTURE = [HealthCheck.function_scoped_fixture]
CURSOR = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:-]{0,127}")
JSON_ROUTES = {
    "/responses": {"model": "gpt-4o-mini", "input": "hi"},
    "/chat/completions": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/images/generations": {"model": "dall-e-3", "prompt": "a cat", "size": "1024x1024", "quality": "standard"},
    "/moderations": {"input": "hi"},
}


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], sqlite_url: str, platform: RecordingUpstream) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=platform.base_url)


@pytest.fixture
def keys(gateway: Gateway) -> tuple[str, str]:
    return gateway.new_key("victim")["key"], gateway.new_key("attacker")["key"]


def _post(gateway: Gateway, key: str, path: str, raw: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return gateway.http.post(gateway.base_url + path, headers=headers, content=raw)


def _refused(response: httpx.Response, status: int = 400, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and isinstance(error["message"], str)
    if code is not None:
        assert error["code"] == code, error
    return error


# --- deep nesting: never a RecursionError, on any route, whatever else the body holds ---

containers = st.lists(st.sampled_from(["[", '{"a":', '{"a_id":', '{"file_id":', '{"x\\u0061":']), min_size=1)


def _nested(openers: list[str], depth: int, leaf: str) -> str:
    chain = [openers[i % len(openers)] for i in range(depth)]
    return "".join(chain) + leaf + "".join("]" if o == "[" else "}" for o in reversed(chain))


@settings(max_examples=300, deadline=None)
@given(
    openers=containers,
    depth=st.integers(MAX_DEPTH + 1, 1000),
    route=st.sampled_from(sorted(JSON_ROUTES)),
    trigger=st.sampled_from(["", ',"x_id":"y"', ',"model":"a"', ',"k":"\\u0041"', ',"conversation":"conv_1"']),
)
def test_a_body_nested_past_the_bound_is_a_400_never_a_recursion_error(
    openers: list[str], depth: int, route: str, trigger: str
) -> None:
    raw = ('{"model":"gpt-4o-mini","pad":' + _nested(openers, depth, '"leaf"') + trigger + "}").encode()
    payload = orjson.loads(raw)  # orjson reads up to 1,024 levels: this body reaches the gateway's own code
    with pytest.raises(BadRequest) as refused:
        inspect_body("/v1" + route, raw, payload)
    assert refused.value.code in ("nesting_too_deep", "duplicate_key")


@settings(max_examples=200, deadline=None)
@given(openers=containers, depth=st.integers(1, MAX_DEPTH - 2), route=st.sampled_from(sorted(JSON_ROUTES)))
def test_a_body_within_the_bound_is_read(openers: list[str], depth: int, route: str) -> None:
    raw = ('{"model":"gpt-4o-mini","pad":' + _nested(openers, depth, '"leaf"') + "}").encode()
    inspect_body("/v1" + route, raw, orjson.loads(raw))  # no error: deep but legal bodies pass


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE)
@given(
    openers=containers,
    depth=st.integers(MAX_DEPTH + 1, 1010),
    route=st.sampled_from(sorted(JSON_ROUTES)),
    dup=st.booleans(),
)
def test_deep_bodies_get_an_openai_400_over_http_and_reach_nothing(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, openers: list[str], depth: int, route: str,
    dup: bool,
) -> None:  # fmt: skip
    platform.clear()
    body = dict(JSON_ROUTES[route])
    text = orjson.dumps(body).decode()[:-1] + ',"pad":' + _nested(openers, depth, "1")
    text += ',"model":"gpt-4o"}' if dup else "}"
    response = _post(gateway, keys[1], route, text.encode())
    error = _refused(response)
    assert error["code"] in ("nesting_too_deep", "duplicate_key")
    assert platform.seen == []


def test_a_deep_batch_line_is_refused_by_line_not_with_a_500() -> None:
    """Batch lines go through the same reading (batch_input._read_once)."""
    import asyncio

    from tenantgate.platform.proxy.batch_input import InvalidBatchInput, _read_once

    body = '{"model":"gpt-4o-mini","input":"x","x":' + _nested(['{"a_id":'], 990, "1") + "}"
    line = ('{"custom_id":"1","method":"POST","url":"/v1/responses","body":' + body + "}").encode()
    with pytest.raises(InvalidBatchInput) as refused:
        asyncio.run(_read_once(7, "/v1/responses", line, orjson.loads(line)["body"], None))
    assert refused.value.message.startswith("Line 7 of the input file:")
    assert refused.value.status == 400


# --- one reading: any top-level key twice is refused, however it is spaced; no false alarms ---

plain_keys = st.sampled_from(
    ["model", "size", "quality", "n", "style", "response_format", "temperature", "user", "text", "input", "tools",
     "metadata", "service_tier", "store", "background", "prompt", "voice", "dimensions", "seed", "top_p"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/\\\"é", min_size=1, max_size=10)  # fmt: skip
scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8) | plain_keys
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_keys, inner, max_size=3), max_leaves=6
)
spaces = st.sampled_from(["", " ", "\n", "\t", "  \r\n"])


def _encode(members: list[tuple[str, Any]], gap: str, escape: bool) -> bytes:
    parts = [
        f"{gap}{json.dumps(k, ensure_ascii=escape)}{gap}:{gap}{json.dumps(v, ensure_ascii=escape)}{gap}"
        for k, v in members
    ]
    return ("{" + ",".join(parts) + "}").encode()


@settings(max_examples=500, deadline=None)
@given(
    members=st.dictionaries(plain_keys, values, min_size=1, max_size=6),
    duplicate=st.data(),
    gap=spaces,
    escape=st.booleans(),
)
def test_any_top_level_key_given_twice_is_refused_however_spelled(
    members: dict[str, Any], duplicate: st.DataObject, gap: str, escape: bool
) -> None:
    key = duplicate.draw(st.sampled_from(sorted(members)))
    at = duplicate.draw(st.integers(0, len(members)))
    other = duplicate.draw(values.filter(lambda v: v != members[key]))
    pairs = list(members.items())
    pairs.insert(at, (key, other))
    raw = _encode(pairs, gap, escape)
    payload = orjson.loads(raw)
    with pytest.raises(BadRequest) as refused:
        check_single_reading(raw, payload, escaped_or_nested=False)
    assert refused.value.code == "duplicate_key"


@settings(max_examples=500, deadline=None)
@given(members=st.dictionaries(plain_keys, values, min_size=1, max_size=6), gap=spaces, escape=st.booleans())
def test_a_body_without_duplicates_is_never_refused(members: dict[str, Any], gap: str, escape: bool) -> None:
    """Values equal to key names, nested keys named like top-level ones: at most a slower check, never a 400."""
    raw = _encode(list(members.items()), gap, escape)
    check_single_reading(raw, orjson.loads(raw), escaped_or_nested=False)


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE)
@given(data=st.data(), route=st.sampled_from(sorted(JSON_ROUTES)), gap=spaces)
def test_a_duplicated_priced_or_routed_key_never_reaches_the_upstream(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, data: st.DataObject, route: str, gap: str
) -> None:
    """The audit's HD image priced as a standard one: two ``size``/``quality``; and any other key of the route."""
    platform.clear()
    body = dict(JSON_ROUTES[route])
    key = data.draw(st.sampled_from(sorted(body)))
    pairs = list(body.items())
    pairs.insert(data.draw(st.integers(0, len(pairs))), (key, data.draw(values.filter(lambda v: v != body[key]))))
    response = _post(gateway, keys[1], route, _encode(pairs, gap, False))
    assert _refused(response, code="duplicate_key")["param"] == key
    assert platform.seen == []


# --- query strings: control characters, repeated or ill-formed parameters ---

LIST_PATHS = [
    "/files", "/batches", "/vector_stores", "/chat/completions", "/models", "/responses/resp_x/input_items",
    "/conversations/conv_x/items",
]  # fmt: skip
query_names = st.sampled_from(["after", "before", "limit", "order", "purpose", "include[]", "filter", "api_key"])


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(
    path=st.sampled_from(LIST_PATHS),
    name=query_names,
    value=st.text(alphabet="abc019_-", max_size=8),
    control=st.integers(0, 0x1F) | st.just(0x7F),
    at=st.integers(0, 8),
    plus_encoded=st.booleans(),
)
def test_a_control_character_in_any_query_parameter_is_a_400(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, path: str, name: str, value: str,
    control: int, at: int, plus_encoded: bool,
) -> None:  # fmt: skip
    platform.clear()
    at = min(at, len(value))
    sent = quote(value[:at]) + f"%{control:02X}" + quote(value[at:])
    if plus_encoded:
        sent = "+" + sent
    response = gateway.http.get(
        f"{gateway.base_url}{path}?{quote(name)}={sent}", headers={"Authorization": f"Bearer {keys[1]}"}
    )
    _refused(response, code="invalid_query")
    assert platform.seen == []


@pytest.fixture
def own_response(gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream) -> str:
    platform.next_response_id = "resp_attackers0"
    gateway.client(keys[1]).responses.create(model="gpt-4o-mini", input="mine")
    return platform.next_response_id


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(
    name=st.sampled_from(["after", "before", "limit", "order"]),
    first=st.sampled_from(["5", "asc", "msg_a", "100000", "desc", ""]),
    second=st.sampled_from(["5", "asc", "msg_b", "100000", "desc", "", "x"]),
    noise=st.lists(st.sampled_from(["include[]=file_search_call.results", "api_key=k", "x=1"]), max_size=2),
    where=st.integers(0, 2),
)
def test_a_forwarded_parameter_given_twice_is_refused(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, own_response: str, name: str, first: str,
    second: str, noise: list[str], where: int,
) -> None:  # fmt: skip
    """``limit=5&limit=100000``: the gateway and the upstream might each read a different one."""
    platform.clear()
    parts = [*noise]
    parts.insert(min(where, len(parts)), f"{name}={first}")
    parts.append(f"{name}={second}")
    response = gateway.http.get(
        f"{gateway.base_url}/responses/{own_response}/input_items?{'&'.join(parts)}",
        headers={"Authorization": f"Bearer {keys[1]}"},
    )
    error = _refused(response)
    assert error["param"] == name and error["code"] in ("duplicate_parameter", "invalid_query")
    if error["code"] == "invalid_query":  # a value outside its grammar is named first; the repeat is refused anyway
        assert not _well_formed(name, first) or not _well_formed(name, second)
    assert platform.seen == []


def _well_formed(name: str, value: str) -> bool:
    return value == "" or {"limit": value.isdigit(), "order": value in ("asc", "desc")}.get(name, True)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(
    cursor=st.sampled_from(["after", "before"]),
    value=st.text(min_size=129, max_size=5000, alphabet="abcdef0123456789_")
    | st.text(min_size=1, max_size=40).filter(lambda v: CURSOR.fullmatch(v) is None),
)
def test_an_oversized_or_ill_formed_cursor_never_reaches_the_upstream(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, own_response: str, cursor: str, value: str
) -> None:
    platform.clear()
    response = gateway.http.get(
        f"{gateway.base_url}/responses/{own_response}/input_items?{cursor}={quote(value, safe='')}",
        headers={"Authorization": f"Bearer {keys[1]}"},
    )
    _refused(response)
    assert platform.seen == []


def _once_unless_a_list(pair: tuple[str, str]) -> object:
    return pair if pair[0] == "include[]" else pair[0]


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["after", "before", "limit", "order", "include[]"]),
            st.sampled_from(["msg_1", "resp_attackers0", "7", "asc", "desc", "message.output_text.logprobs"]),
        ),
        max_size=5,
        unique_by=_once_unless_a_list,
    ),
    ignored=st.lists(st.sampled_from(["api_key=secret", "x=%2F..%2F", "stream=true"]), max_size=2),
)
def test_what_the_upstream_gets_is_the_checked_query_rebuilt(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, own_response: str,
    params: list[tuple[str, str]], ignored: list[str],
) -> None:  # fmt: skip
    from tenantgate.platform.proxy.routes import STORED_RESPONSE_ROUTES

    platform.clear()
    sent = [
        (n, v) for n, v in params
        if not (n == "limit" and not v.isdigit()) and not (n == "order" and v not in ("asc", "desc"))
    ]  # fmt: skip
    query = "&".join([*(f"{quote(n)}={quote(v)}" for n, v in sent), *ignored])
    response = gateway.http.get(
        f"{gateway.base_url}/responses/{own_response}/input_items?{query}",
        headers={"Authorization": f"Bearer {keys[1]}"},
    )
    assert response.status_code == 200, response.text
    if any(n in ("after", "before") and v != own_response for n, v in sent):
        # A cursor that is none of the caller's ids (its own response is one) is answered here: the empty page. The
        # upstream may be asked for the response's own input items (is the cursor one of them?), never with it.
        # (This upstream's list is one empty page: the look-up is that one request.)
        assert response.json()["data"] == []
        assert [(s.raw_path, s.query) for s in platform.seen] in (
            [],
            [(f"/v1/responses/{own_response}/input_items", "limit=100&order=asc")],
        ), platform.seen
        return
    route = STORED_RESPONSE_ROUTES[2]
    assert [s.query for s in platform.seen] == [route.query_of(query.encode())]
    assert "api_key" not in platform.seen[0].query and "stream" not in platform.seen[0].query


# --- headers: hop-by-hop names, idempotency keys ---


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE)
@given(
    names=st.lists(st.from_regex(r"x-[a-z]{1,8}(-[a-z]{1,6})?", fullmatch=True), min_size=1, max_size=4, unique=True),
    case=st.booleans(),
    spacing=st.sampled_from([",", ", ", " ,  "]),
)
def test_headers_the_connection_header_names_are_not_forwarded(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, names: list[str], case: bool, spacing: str
) -> None:
    platform.clear()
    listed = spacing.join(n.upper() if case else n for n in names)
    headers = {"Authorization": f"Bearer {keys[1]}", "Connection": f"keep-alive{spacing}{listed}"}
    headers.update({name: "hop" for name in names})
    headers["x-end-to-end"] = "kept"
    response = gateway.http.post(gateway.base_url + "/embeddings", headers=headers, json=JSON_ROUTES["/embeddings"])
    assert response.status_code == 200, response.text
    (seen,) = platform.seen
    forwarded = {name for name, _ in seen.headers}
    assert not forwarded & set(names)
    if "x-end-to-end" not in names:
        assert ("x-end-to-end", "kept") in seen.headers


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE)
@given(key=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64))
def test_one_idempotency_key_chosen_by_two_tenants_reaches_the_upstream_as_two(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, key: str
) -> None:
    platform.clear()
    for tenant_key in (*keys, keys[0]):
        response = gateway.http.post(
            gateway.base_url + "/embeddings",
            headers={"Authorization": f"Bearer {tenant_key}", "Idempotency-Key": key},
            json=JSON_ROUTES["/embeddings"],
        )
        assert response.status_code == 200, response.text
    sent = [dict(s.headers).get("idempotency-key") for s in platform.seen]
    assert len(sent) == 3 and all(value and value != key for value in sent)
    victim, attacker, victim_again = sent
    assert victim != attacker  # no tenant can be answered from another's idempotency entry
    assert victim == victim_again  # a tenant's own retries stay idempotent


# --- cursors of lists whose entries the gateway tracks; the audit's 500s on a real Postgres ---


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE)
@given(
    cursor=st.sampled_from(["after", "before"]),
    file_id=st.builds(lambda tail: "file-" + tail, st.text(alphabet="abcdefABCDEF0123456789", min_size=1, max_size=24)),
)
def test_a_file_cursor_the_caller_does_not_own_is_an_empty_page_that_reaches_nothing(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, cursor: str, file_id: str
) -> None:
    """A store's files are files the gateway saw made: an id it does not know as the caller's (another tenant's
    file made outside it, a guess) is no position in the caller's list, answered here and never asked upstream."""
    headers = {"Authorization": f"Bearer {keys[1]}"}
    platform.next_vector_store_id = "vs_attackers01"
    created = gateway.http.post(gateway.base_url + "/vector_stores", headers=headers, json={"name": "s"})
    assert created.status_code == 200, created.text
    platform.clear()
    response = gateway.http.get(f"{gateway.base_url}/vector_stores/vs_attackers01/files?{cursor}={file_id}",
                                headers=headers)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [] and response.json()["has_more"] is False
    assert platform.seen == []
    mine = gateway.http.get(f"{gateway.base_url}/vector_stores/vs_attackers01/files", headers=headers)
    assert mine.status_code == 200 and len(platform.seen) == 1  # the caller's own list still goes to the upstream


@pytest.mark.parametrize(
    "query",
    ["/files?after=a%00", "/files?purpose=a%00", "/batches?after=a%00", "/vector_stores?after=a%00",
     "/chat/completions?after=a%00", "/files?limit=1&order=asc&after=%00%ff"],
)  # fmt: skip
def test_the_audits_nul_queries_are_400s_on_every_backend(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str, query: str
) -> None:
    """These were asyncpg errors surfacing as plain-text 500s."""
    gateway = gateway_factory(database_url=database_url, upstream_base_url=dev_upstream)
    key = gateway.new_key("acme")["key"]
    response = gateway.http.get(gateway.base_url + query, headers={"Authorization": f"Bearer {key}"})
    _refused(response, code="invalid_query")
    # The same list without the NUL is served.
    clean = query.replace("%00", "x").replace("%ff", "")
    assert gateway.http.get(gateway.base_url + clean, headers={"Authorization": f"Bearer {key}"}).status_code == 200


codings = st.lists(
    st.sampled_from(["chunked", "identity", "gzip", "deflate", "x-custom", ""]).map(
        lambda c: c.upper() if c == "gzip" else c
    ),
    min_size=1,
    max_size=3,
).map(lambda parts: parts if parts[-1] == "chunked" else [*parts, "chunked"])


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE)
@given(parts=codings, comma=st.sampled_from([",", ", ", " ,", "\t,"]), pad=st.sampled_from(["", " ", "\t"]))
def test_a_transfer_coding_other_than_chunked_is_a_400(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, parts: list[str], comma: str, pad: str
) -> None:
    """``identity, chunked`` and the like: read as chunked here, perhaps not by a front or the upstream. Only a lone
    ``chunked`` frames a request body (generated codings always end in ``chunked``, as a parser would need)."""
    coding = (pad + comma.join(parts) + pad).encode()
    if coding.strip().lower() == b"chunked":
        parts = ["identity", *parts]
        coding = comma.join(parts).encode()
    platform.clear()
    body = orjson.dumps(JSON_ROUTES["/embeddings"])
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keys[1].encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: " + coding + b"\r\n\r\n" + chunked
        )  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, answer = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), data[:200]
    assert orjson.loads(answer)["error"]["type"] == "invalid_request_error"
    assert platform.seen == []


# --- stored prompts of the shared account: only those the operator granted ---

prompt_ids = st.builds(lambda tail: "pmpt_" + tail, st.text(alphabet="abcdef0123456789", min_size=4, max_size=24))


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE)
@given(
    prompt=prompt_ids,
    shape=st.sampled_from(["object", "versioned", "string", "nested_id"]),
    route=st.sampled_from(["/responses", "/responses/input_tokens", "/responses/compact"]),
    named_model=st.booleans(),
)
def test_a_platform_prompt_nobody_granted_is_a_404_before_the_upstream(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, prompt: str, shape: str, route: str,
    named_model: bool,
) -> None:  # fmt: skip
    platform.clear()
    body: dict[str, Any] = {"input": "hi"}
    if named_model or route != "/responses" or shape in ("string", "nested_id"):
        body["model"] = "gpt-4o-mini"
    body |= {
        "object": {"prompt": {"id": prompt}},
        "versioned": {"prompt": {"id": prompt, "version": "2", "variables": {"x": "y"}}},
        "string": {"prompt": prompt},
        "nested_id": {"metadata": {"prompt_id": prompt}},
    }[shape]
    response = _post(gateway, keys[1], route, orjson.dumps(body))
    assert response.status_code == 404, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert platform.seen == []


def test_a_granted_platform_prompt_runs_for_the_tenants_it_was_granted_to(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, platform: RecordingUpstream
) -> None:
    probe = gateway_factory(database_url=sqlite_url, upstream_base_url=platform.base_url)
    alice, bob = probe.new_key("alice"), probe.new_key("bob")
    grants = f"pmpt_everyone,{alice['tenant_id']}:pmpt_alice"
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=platform.base_url, platform_prompts=grants)

    made = iter(range(100))

    def run(key: dict[str, Any], prompt: str) -> int:
        platform.next_response_id = f"resp_granted{next(made)}"  # each run stores a response of its own
        body = {"model": "gpt-4o-mini", "prompt": {"id": prompt}, "input": "hi"}
        return _post(gateway, key["key"], "/responses", orjson.dumps(body)).status_code

    assert run(alice, "pmpt_everyone") == 200 and run(bob, "pmpt_everyone") == 200
    assert run(alice, "pmpt_alice") == 200
    platform.clear()
    assert run(bob, "pmpt_alice") == 404  # made for Alice: Bob cannot run it, whatever he learned
    assert run(alice, "pmpt_other") == 404
    assert platform.seen == []


def test_a_batch_line_naming_an_ungranted_prompt_is_refused_by_line() -> None:
    import asyncio

    from tenantgate.platform.proxy.batch_input import InvalidBatchInput, _read_once
    from tenantgate.platform.proxy.references import Reference
    from tenantgate.platform.proxy.stored import not_found

    async def nobodys(named: list[Reference]) -> None:  # what proxy/stored.py answers for a kind it does not track
        raise not_found(named[0].kind, named[0].id, named[0].param)

    line = b'{"custom_id":"1","method":"POST","url":"/v1/responses","body":{"prompt":{"id":"pmpt_x"},"input":"x"}}'
    body = orjson.loads(line)["body"]
    with pytest.raises(InvalidBatchInput) as refused:
        asyncio.run(_read_once(3, "/v1/responses", line, body, nobodys))
    assert refused.value.message.startswith("Line 3 of the input file:")
    asyncio.run(_read_once(3, "/v1/responses", line, body, nobodys, lambda named: []))  # granted: goes through


# --- model names: what no upstream names is no model ---


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(
    route=st.sampled_from(sorted(JSON_ROUTES)),
    control=st.integers(0, 0x1F) | st.integers(0x7F, 0x9F),
    at=st.integers(0, 30),
    long=st.booleans(),
)
def test_a_model_name_with_a_control_character_or_too_long_is_a_400(
    gateway: Gateway, keys: tuple[str, str], platform: RecordingUpstream, route: str, control: int, at: int,
    long: bool,
) -> None:  # fmt: skip
    """``gpt-4o-mini\\u0000`` was admitted for a key without an allow-list and stored unpriced."""
    platform.clear()
    body = dict(JSON_ROUTES[route])
    name = str(body.get("model", "omni-moderation-latest"))
    at = min(at, len(name))
    body["model"] = "a" * 300 if long else name[:at] + chr(control) + name[at:]
    response = _post(gateway, keys[1], route, orjson.dumps(body))
    assert _refused(response, code="invalid_model")["param"] == "model"
    assert platform.seen == []
