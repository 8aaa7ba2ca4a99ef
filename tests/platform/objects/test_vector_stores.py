"""Vector stores through the gateway with the official SDK: create, attach files, search, list (the tenant's own
index), file batches, delete; and the isolation matrix: another tenant with A's ids gets the 404 of an unknown id on
every route and in a Responses ``file_search`` tool, and nothing of A's changes."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN
from tests.support.gateway import Gateway
from tests.support.scripted import ScriptedUpstream, json_answer

_APPLES = "Apples grow in orchards. An orchard of apples needs bees in spring.\n"
_KIWIS = "Kiwis are brown and fuzzy outside, green inside. Kiwi vines climb.\n"


def _upload(client: openai.OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id


def test_vector_stores_through_the_sdk(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    client = gateway.client(gateway.new_key("vs")["key"])
    apples, kiwis = _upload(client, "apples.txt", _APPLES), _upload(client, "kiwis.txt", _KIWIS)

    store = client.vector_stores.create(name="fruit", file_ids=[apples])
    assert store.name == "fruit"
    attached = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=kiwis)
    assert attached.status == "completed" and attached.vector_store_id == store.id
    assert client.vector_stores.files.poll(apples, vector_store_id=store.id).status == "completed"
    seen = client.vector_stores.retrieve(store.id)
    assert seen.usage_bytes == len(_APPLES) + len(_KIWIS)
    assert seen.file_counts.completed == 2

    hits = client.vector_stores.search(store.id, query="fuzzy kiwi vines")
    assert [hit.file_id for hit in hits] == [kiwis]
    assert "Kiwis are brown" in hits.data[0].content[0].text
    client.vector_stores.files.update(apples, vector_store_id=store.id, attributes={"colour": "red"})
    filtered = client.vector_stores.search(
        store.id, query="apples kiwi", filters={"type": "eq", "key": "colour", "value": "red"}
    )
    assert [hit.file_id for hit in filtered] == [apples]
    content = client.vector_stores.files.content(apples, vector_store_id=store.id)
    assert "".join(part.text or "" for part in content) == _APPLES
    assert {f.id for f in client.vector_stores.files.list(store.id)} == {apples, kiwis}

    other = client.vector_stores.create(name="other")
    batch = client.vector_stores.file_batches.create_and_poll(other.id, file_ids=[apples, kiwis])
    assert batch.status == "completed" and batch.file_counts.completed == 2
    assert {f.id for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=other.id)} == {
        apples,
        kiwis,
    }

    assert {s.id for s in client.vector_stores.list()} == {other.id, store.id}
    client.vector_stores.update(store.id, name="renamed")
    assert {s.id: s.name for s in client.vector_stores.list()}[store.id] == "renamed"
    pages = client.vector_stores.list(limit=1, order="asc")
    assert len(pages.data) == 1 and pages.has_more
    assert sorted(s.id for s in pages) == sorted([store.id, other.id])

    assert client.vector_stores.files.delete(kiwis, vector_store_id=store.id).deleted is True
    assert [f.id for f in client.vector_stores.files.list(store.id)] == [apples]
    assert client.vector_stores.delete(store.id).deleted is True
    assert [s.id for s in client.vector_stores.list()] == [other.id]
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_file_search_in_responses_takes_the_callers_stores(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    client = gateway.client(gateway.new_key("vs-responses")["key"])
    store = client.vector_stores.create(name="mine")
    tool: Any = {"type": "file_search", "vector_store_ids": [store.id]}
    answer = client.responses.create(model="gpt-4o-mini", input="what grows?", tools=[tool])
    assert answer.status == "completed"


def test_another_tenant_cannot_reach_a_vector_store(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    a = gateway.client(gateway.new_key("vs-a")["key"])
    b = gateway.client(gateway.new_key("vs-b")["key"])
    a_file = _upload(a, "apples.txt", _APPLES)
    a_spare = _upload(a, "kiwis.txt", _KIWIS)
    a_store = a.vector_stores.create(name="a-store", file_ids=[a_file])
    a_batch = a.vector_stores.file_batches.create_and_poll(a_store.id, file_ids=[a_spare])
    b_file = _upload(b, "b.txt", "tenant b's own text\n")
    b_store = b.vector_stores.create(name="b-store")
    before = a.vector_stores.retrieve(a_store.id)

    vs = b.vector_stores
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("retrieve", lambda: vs.retrieve(a_store.id)),
        ("modify", lambda: vs.update(a_store.id, name="pwned")),
        ("search", lambda: vs.search(a_store.id, query="apples")),
        ("attach to A's store", lambda: vs.files.create(vector_store_id=a_store.id, file_id=b_file)),
        ("list A's store files", lambda: vs.files.list(a_store.id)),
        ("retrieve file", lambda: vs.files.retrieve(a_file, vector_store_id=a_store.id)),
        ("update file", lambda: vs.files.update(a_file, vector_store_id=a_store.id, attributes={"x": "y"})),
        ("file content", lambda: vs.files.content(a_file, vector_store_id=a_store.id)),
        ("file batch on A's store", lambda: vs.file_batches.create(a_store.id, file_ids=[b_file])),
        ("retrieve A's batch", lambda: vs.file_batches.retrieve(a_batch.id, vector_store_id=a_store.id)),
        ("cancel A's batch", lambda: vs.file_batches.cancel(a_batch.id, vector_store_id=a_store.id)),
        ("list A's batch files", lambda: vs.file_batches.list_files(a_batch.id, vector_store_id=a_store.id)),
        # B's own store, naming A's objects in the path or the body:
        ("attach A's file", lambda: vs.files.create(vector_store_id=b_store.id, file_id=a_file)),
        ("retrieve A's file in B's store", lambda: vs.files.retrieve(a_file, vector_store_id=b_store.id)),
        ("A's batch under B's store", lambda: vs.file_batches.retrieve(a_batch.id, vector_store_id=b_store.id)),
        ("batch of A's files", lambda: vs.file_batches.create(b_store.id, file_ids=[b_file, a_file])),
        (
            "batch of A's files (files[])",
            lambda: vs.file_batches.create(b_store.id, files=[{"file_id": a_spare}]),
        ),
        ("create with A's file", lambda: vs.create(name="x", file_ids=[a_file])),
        (
            "file_search over A's store",
            lambda: b.responses.create(
                model="gpt-4o-mini",
                input="hi",
                tools=[{"type": "file_search", "vector_store_ids": [b_store.id, a_store.id]}],
            ),
        ),
        ("delete file", lambda: vs.files.delete(a_file, vector_store_id=a_store.id)),
        ("delete", lambda: vs.delete(a_store.id)),
    ]
    for name, attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
            pytest.fail(f"{name}: not refused")

    assert [s.id for s in b.vector_stores.list()] == [b_store.id]
    assert b.vector_stores.list(after=a_store.id).data == []
    assert [f.id for f in b.vector_stores.files.list(b_store.id)] == []
    after = a.vector_stores.retrieve(a_store.id)
    assert (after.name, after.file_counts.total, after.usage_bytes) == (
        before.name,
        before.file_counts.total,
        before.usage_bytes,
    )
    assert {f.id for f in a.vector_stores.files.list(a_store.id)} == {a_file, a_spare}
    assert [s.id for s in a.vector_stores.list()] == [a_store.id]


def _storage_usage(gateway: Gateway, key: str, **query: Any) -> list[dict[str, Any]]:
    response = gateway.http.get(
        gateway.base_url + "/organization/usage/vector_stores",
        params={"start_time": int(time.time()) - 3600, "bucket_width": "1h", **query},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "page"
    return [result for bucket in page["data"] for result in bucket["results"]]


def test_storage_is_reported_per_tenant_from_what_the_poller_sees(objects_gateway: Callable[..., Gateway]) -> None:
    """Nobody retrieves the store after its files are indexed: the poller records its bytes for the Usage API and
    /v1/me; another tenant's report shows none of them, whatever project it names."""
    gateway = objects_gateway(vector_store_usage_seconds=0.5)
    key_a, key_b = gateway.new_key("vs-usage-a"), gateway.new_key("vs-usage-b")
    a = gateway.client(key_a["key"])
    store = a.vector_stores.create(name="metered", file_ids=[_upload(a, "a.txt", _APPLES)])
    assert store.usage_bytes == 0  # the file is still being indexed

    deadline = time.monotonic() + 15
    while _me_storage(gateway, key_a["key"])["vector_store_bytes"] != len(_APPLES):
        assert time.monotonic() < deadline, "the poller never recorded the store's bytes"
        time.sleep(0.2)
    assert _me_storage(gateway, key_a["key"])["vector_stores"] == 1
    assert _storage_usage(gateway, key_a["key"]) == [
        {"object": "organization.usage.vector_stores.result", "usage_bytes": len(_APPLES), "project_id": None}
    ]
    grouped = _storage_usage(gateway, key_a["key"], group_by="project_id")
    assert [(r["project_id"], r["usage_bytes"]) for r in grouped] == [(key_a["tenant_id"], len(_APPLES))]

    assert _storage_usage(gateway, key_b["key"]) == []
    assert _storage_usage(gateway, key_b["key"], project_ids=key_a["tenant_id"], group_by="project_id") == []
    assert _me_storage(gateway, key_b["key"])["vector_store_bytes"] == 0
    # The operator's view, through the SDK's admin client: every tenant, each its own.
    admin = openai.OpenAI(base_url=gateway.base_url, api_key="unused", admin_api_key=ADMIN_TOKEN)
    page = admin.admin.organization.usage.vector_stores(
        start_time=int(time.time()) - 3600, bucket_width="1h", group_by=["project_id"]
    )
    by_tenant = {r.project_id: r.usage_bytes for bucket in page.data for r in bucket.results}
    assert by_tenant[key_a["tenant_id"]] == len(_APPLES) and key_b["tenant_id"] not in by_tenant

    a.vector_stores.delete(store.id)
    assert _me_storage(gateway, key_a["key"])["vector_store_bytes"] == 0
    # The hour in which it held the bytes keeps them: storage was used.
    assert [r["usage_bytes"] for r in _storage_usage(gateway, key_a["key"])] == [len(_APPLES)]


def test_a_store_whose_files_change_is_listed_with_its_new_bytes(objects_gateway: Callable[..., Gateway]) -> None:
    """Files attached after the store was made change its bytes once indexed; nobody retrieves the store, yet its
    list entry (and /v1/me) follow within a few poller intervals, not after TENANTGATE_VECTOR_STORE_USAGE_SECONDS."""
    gateway = objects_gateway()  # vector stores looked at every 900 s; batches and changed stores every 0.5 s
    key = gateway.new_key("vs-fresh")["key"]
    client = gateway.client(key)
    store = client.vector_stores.create(name="grows")
    client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=_upload(client, "k.txt", _KIWIS))
    deadline = time.monotonic() + 15
    while client.vector_stores.list().data[0].usage_bytes != len(_KIWIS):
        assert time.monotonic() < deadline, "the store's list entry never showed its new bytes"
        time.sleep(0.2)
    assert _me_storage(gateway, key)["vector_store_bytes"] == len(_KIWIS)


def _me_storage(gateway: Gateway, key: str) -> dict[str, Any]:
    response = gateway.http.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    storage: dict[str, Any] = response.json()["storage"]
    return storage


_NAMED = st.sampled_from(["a_file", "a_spare", "b_file", "b_other", "unknown", "a_store", "b_store"])
_BODY_FILE_FIELDS = st.one_of(
    st.fixed_dictionaries({"file_id": _NAMED}),
    st.fixed_dictionaries({"file_ids": st.lists(_NAMED, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"files": st.lists(st.fixed_dictionaries({"file_id": _NAMED}), min_size=1, max_size=3)}),
    st.fixed_dictionaries({"file_ids": st.sampled_from([7, {}, "x", [1], [None], [{"id": "a_file"}]])}),
)


@pytest.fixture
def two_tenants(objects_gateway: Callable[..., Gateway]) -> dict[str, Any]:
    gateway = objects_gateway()
    a_key, b_key = gateway.new_key("vs-gen-a")["key"], gateway.new_key("vs-gen-b")["key"]
    a, b = gateway.client(a_key), gateway.client(b_key)
    ids = {
        "a_file": _upload(a, "a.txt", _APPLES),
        "a_spare": _upload(a, "a2.txt", _KIWIS),
        "b_file": _upload(b, "b.txt", "b's text\n"),
        "b_other": _upload(b, "b2.txt", "more of b's text\n"),
        "unknown": "file-nobody0000000000000000",
    }
    ids["a_store"] = a.vector_stores.create(name="a", file_ids=[ids["a_file"]]).id
    ids["b_store"] = b.vector_stores.create(name="b").id
    return {"gateway": gateway, "a": a, "b_key": b_key, "ids": ids}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(["/vector_stores", "/vector_stores/{store}/files", "/vector_stores/{store}/file_batches"]),
    store=st.sampled_from(["a_store", "b_store", "unknown"]),
    fields=_BODY_FILE_FIELDS,
)
def test_generated_bodies_attach_only_the_callers_files(
    two_tenants: dict[str, Any], route: str, store: str, fields: dict[str, Any]
) -> None:
    """Tenant B names any mix of its own ids, A's and unknown ones in any file field of any vector store body: the
    request goes through only when the store and every file are B's; else 404 (400 for a malformed field), and
    none of A's files is ever attached anywhere."""
    gateway, ids = two_tenants["gateway"], two_tenants["ids"]

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            return ids.get(value, value)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    body = resolve(fields)
    path = route.format(store=ids.get(store, store))
    response = gateway.http.post(
        gateway.base_url + path, json=body, headers={"Authorization": f"Bearer {two_tenants['b_key']}"}
    )
    named = [v for v in _strings(fields) if v in ids]
    malformed = "file_ids" in fields and not (
        isinstance(fields["file_ids"], list) and all(isinstance(v, str) for v in fields["file_ids"])
    )
    store_ok = route == "/vector_stores" or store == "b_store"
    files_ok = bool(named) and all(name in ("b_file", "b_other") for name in named)
    if route == "/vector_stores/{store}/files" and "file_id" not in fields:
        files_ok = False  # attaching names exactly one file_id
    if route == "/vector_stores/{store}/file_batches" and "file_id" in fields:
        files_ok = False  # a file batch names file_ids or files
    if malformed and store_ok:
        assert response.status_code == 400, (path, body, response.text)
    elif store_ok and all(name in ("b_file", "b_other", "b_store") for name in named) and "b_store" in named:
        # B's own store named as a file is B's to name: the upstream answers for it (not a file: 400 or 404).
        assert response.status_code in (200, 400, 404), (path, body, response.text)
    elif store_ok and files_ok:
        assert response.status_code == 200, (path, body, response.text)
    else:
        assert response.status_code in (400, 404), (path, body, response.text)
        if not malformed and not store_ok:
            assert response.status_code == 404, (path, body, response.text)
    a_files = {ids["a_file"], ids["a_spare"]}
    b_client = gateway.client(two_tenants["b_key"])
    # The stores this request could have put a file in: B's own, or the one it created. (Every earlier example
    # checked its own; listing all of B's stores each time made the test quadratic: 14 s of 60 examples.)
    touched = {ids["b_store"]}
    if route == "/vector_stores" and response.status_code == 200:
        touched.add(response.json()["id"])
    for b_store in touched:
        assert not {f.id for f in b_client.vector_stores.files.list(b_store)} & a_files
    assert {f.id for f in two_tenants["a"].vector_stores.files.list(ids["a_store"])} == {ids["a_file"]}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def test_an_endpoint_answering_with_another_tenants_ids_is_withheld(objects_gateway: Callable[..., Gateway]) -> None:
    """B's own endpoint (BYOK) answers B's store create with A's store id, and B's search and file list with A's
    file: each answer is withheld (502), B owns none of A's ids, and A's store is untouched."""
    gateway = objects_gateway(tenant_upstream_allowed_networks="127.0.0.0/8", tenant_upstream_allow_http=True)
    a = gateway.client(gateway.new_key("vs-liar-a")["key"])
    b_key = gateway.new_key("vs-liar-b")
    b = gateway.client(b_key["key"])
    a_file = _upload(a, "a.txt", _APPLES)
    a_store = a.vector_stores.create(name="a", file_ids=[a_file])
    b_store = b.vector_stores.create(name="b")  # made at the platform's upstream, before B brings its own
    with ScriptedUpstream() as liar:
        put = gateway.admin(
            "PUT",
            f"/admin/tenants/{b_key['tenant_id']}/upstream-keys/default",
            json={"api_key": "sk-b", "base_url": liar.base_url},
        )
        assert put.status_code == 200, put.text
        try:
            liar.push(json_answer(200, {"id": a_store.id, "object": "vector_store", "created_at": 1, "usage_bytes": 0}))
            with pytest.raises(openai.APIStatusError) as created:
                b.vector_stores.create(name="mine")
            assert created.value.status_code == 502 and a_store.id not in created.value.response.text
            liar_store = {"id": "vs_liarsown0001", "object": "vector_store", "created_at": 1, "usage_bytes": 0}
            liar.push(json_answer(200, liar_store))
            own = b.vector_stores.create(name="own")
            hit = {"file_id": a_file, "filename": "a.txt", "score": 1.0, "attributes": {}, "content": []}
            page = {"object": "vector_store.search_results.page", "search_query": ["x"], "data": [hit]}
            liar.push(json_answer(200, {**page, "has_more": False, "next_page": None}))
            with pytest.raises(openai.APIStatusError) as searched:
                b.vector_stores.search(own.id, query="x")
            assert searched.value.status_code == 502 and a_file not in searched.value.response.text
            listed = {"id": a_file, "object": "vector_store.file", "vector_store_id": own.id, "created_at": 1}
            liar.push(json_answer(200, {"object": "list", "data": [listed], "has_more": False}))
            with pytest.raises(openai.APIStatusError) as files:
                b.vector_stores.files.list(own.id)
            assert files.value.status_code == 502 and a_file not in files.value.response.text
        finally:
            gateway.admin("DELETE", f"/admin/tenants/{b_key['tenant_id']}/upstream-keys/default")
    with pytest.raises(openai.NotFoundError):
        b.vector_stores.retrieve(a_store.id)
    assert {s.id for s in b.vector_stores.list()} == {b_store.id, "vs_liarsown0001"}  # both B's, none of A's
    assert a.vector_stores.retrieve(a_store.id).name == "a"
    assert [s.id for s in a.vector_stores.list()] == [a_store.id]


def test_another_tenants_id_is_no_cursor_of_a_stores_files(two_tenants: dict[str, Any]) -> None:
    """Paging B's own store's files from A's file or store id would ask the shared upstream where A's object sits in
    its order; it is answered with an empty page, and A's id never goes upstream. B's own cursor still pages."""
    gateway, ids = two_tenants["gateway"], two_tenants["ids"]
    b = gateway.client(two_tenants["b_key"])
    store = ids["b_store"]
    b.vector_stores.files.create(store, file_id=ids["b_file"])
    batch = b.vector_stores.file_batches.create(store, file_ids=[ids["b_other"]])
    lists = (f"/vector_stores/{store}/files", f"/vector_stores/{store}/file_batches/{batch.id}/files")
    headers = {"Authorization": f"Bearer {two_tenants['b_key']}"}
    for path in lists:
        for name in ("a_file", "a_spare", "a_store"):
            for cursor in ("after", "before"):
                encoded = "".join(f"%{byte:02X}" for byte in ids[name].encode())
                for query in (f"{cursor}={ids[name]}", f"{cursor}={encoded}&order=asc"):
                    response = gateway.http.get(f"{gateway.base_url}{path}?{query}", headers=headers)
                    assert response.status_code == 200, (path, query, response.text)
                    assert response.json()["data"] == [], (path, query)
                # The same cursor twice: some parser may read either, so it is refused outright.
                query = f"limit=5&{cursor}=x&{cursor}={ids[name]}"
                response = gateway.http.get(f"{gateway.base_url}{path}?{query}", headers=headers)
                assert response.status_code == 400, (path, query, response.text)
                assert response.json()["error"]["code"] == "duplicate_parameter"
        own = gateway.http.get(f"{gateway.base_url}{path}?order=asc", headers=headers).json()["data"]
        assert own and {f["id"] for f in own} <= {ids["b_file"], ids["b_other"]}
