"""The dev upstream's vector stores through the official openai SDK: indexing that completes, usage_bytes, the toy
search (ranked, deterministic, filtered by attributes), file batches and their cancel, OpenAI's 404s."""

from __future__ import annotations

import io

import openai
import pytest

_TEXTS = {
    "a.txt": "red apples and green pears\n",
    "b.txt": "red apples only\n",
    "c.txt": "nothing to see here\n",
}


@pytest.fixture
def files(client: openai.OpenAI) -> dict[str, str]:
    return {
        name: client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id
        for name, text in _TEXTS.items()
    }


def test_indexing_completes_and_counts_the_text(client: openai.OpenAI, files: dict[str, str]) -> None:
    store = client.vector_stores.create(name="s", file_ids=[files["a.txt"]])
    assert store.status == "in_progress" and store.usage_bytes == 0 and store.file_counts.in_progress == 1
    client.vector_stores.files.poll(files["a.txt"], vector_store_id=store.id, poll_interval_ms=50)
    store = client.vector_stores.retrieve(store.id)
    assert (store.status, store.usage_bytes, store.file_counts.completed) == ("completed", len(_TEXTS["a.txt"]), 1)


def test_search_ranks_by_the_share_of_query_words_and_filters(client: openai.OpenAI, files: dict[str, str]) -> None:
    store = client.vector_stores.create(name="s")
    for name, file_id in files.items():
        client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=file_id, attributes={"name": name}, poll_interval_ms=50
        )
    first = client.vector_stores.search(store.id, query="green apples")
    assert [(hit.filename, hit.score) for hit in first] == [("a.txt", 1.0), ("b.txt", 0.5)]
    again = client.vector_stores.search(store.id, query="green apples")
    assert again.model_dump() == first.model_dump()
    only_b = client.vector_stores.search(
        store.id, query="apples", filters={"type": "eq", "key": "name", "value": "b.txt"}
    )
    assert [hit.filename for hit in only_b] == ["b.txt"]
    assert [hit.filename for hit in client.vector_stores.search(store.id, query="apples", max_num_results=1)] == [
        "a.txt"
    ]


def test_a_cancelled_file_batch_stops_its_files(client: openai.OpenAI, files: dict[str, str]) -> None:
    store = client.vector_stores.create(name="s")
    batch = client.vector_stores.file_batches.create(store.id, file_ids=list(files.values()))
    assert batch.status == "in_progress" and batch.file_counts.total == 3
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled" and cancelled.file_counts.cancelled == 3
    assert client.vector_stores.retrieve(store.id).usage_bytes == 0


def test_unknown_ids_are_openais_404s(client: openai.OpenAI, files: dict[str, str]) -> None:
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve("vs_nothing")
    store = client.vector_stores.create(name="s")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file-nothing")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve("vsfb_nothing", vector_store_id=store.id)
    assert client.vector_stores.delete(store.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search(store.id, query="x")
