"""Vector stores as OpenAI keeps them, small enough to run offline: stores, their files, file batches and search.

A file attached to a store is ``in_progress`` for ``index_seconds`` and then ``completed`` (status is computed when
read, so nothing runs in the background). Its ``usage_bytes`` is the size of its text; a store's is the sum of its
completed files'. Search is a deterministic toy: the text is cut into chunks, a chunk scores the share of the
query's distinct words it contains, ties go to the earlier file and chunk. One account's stores (the dev upstream
has no tenants; the gateway does).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from tenantgate.devupstream.files import FileStore
from tenantgate.devupstream.wire import ApiError, Call, new_id

_CHUNK_CHARS = 800
_MAX_TEXT_BYTES = 8 * 1024 * 1024
_WORD = re.compile(r"\w+")
_STATIC = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
_COMPARISONS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def no_such_store(store_id: str) -> ApiError:
    return ApiError(404, f"No vector store found with id '{store_id}'.", param="vector_store_id")


@dataclass
class _StoreFile:
    file_id: str
    filename: str
    text: str
    created_at: int
    ready_at: float
    attributes: dict[str, Any]
    batch_id: str | None = None
    cancelled: bool = False

    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        return "completed" if time.monotonic() >= self.ready_at else "in_progress"


@dataclass
class _Store:
    view: dict[str, Any]
    files: dict[str, _StoreFile] = field(default_factory=dict)


class VectorStores:
    def __init__(self, files: FileStore, index_seconds: float = 0.3) -> None:
        self.files = files
        self.index_seconds = index_seconds
        self.stores: dict[str, _Store] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    # -- views ----------------------------------------------------------------------------------------------------

    def _store(self, store_id: str) -> _Store:
        store = self.stores.get(store_id)
        if store is None:
            raise no_such_store(store_id)
        return store

    def _file(self, store: _Store, file_id: str) -> _StoreFile:
        found = store.files.get(file_id)
        if found is None:
            raise ApiError(404, f"No file found with id '{file_id}' in vector store.", param="file_id")
        return found

    @staticmethod
    def _counts(files: list[_StoreFile]) -> dict[str, int]:
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
        for item in files:
            counts[item.status()] += 1
        return {**counts, "total": len(files)}

    def store_view(self, store: _Store) -> dict[str, Any]:
        files = list(store.files.values())
        counts = self._counts(files)
        usage = sum(len(f.text.encode()) for f in files if f.status() == "completed")
        status = "in_progress" if counts["in_progress"] else "completed"
        return {**store.view, "usage_bytes": usage, "file_counts": counts, "status": status}

    def file_view(self, store_id: str, item: _StoreFile) -> dict[str, Any]:
        completed = item.status() == "completed"
        return {
            "id": item.file_id, "object": "vector_store.file", "created_at": item.created_at,
            "usage_bytes": len(item.text.encode()) if completed else 0, "vector_store_id": store_id,
            "status": item.status(), "last_error": None, "chunking_strategy": _STATIC, "attributes": item.attributes,
        }  # fmt: skip

    def batch_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        store = self._store(batch["vector_store_id"])
        files = [f for f in store.files.values() if f.batch_id == batch["id"]]
        counts = self._counts(files)
        status = "cancelled" if batch.get("cancelled") else "in_progress" if counts["in_progress"] else "completed"
        return {**batch, "status": status, "file_counts": counts}

    # -- stores ---------------------------------------------------------------------------------------------------

    async def create(self, call: Call, payload: dict[str, Any]) -> None:
        now = int(time.time())
        view: dict[str, Any] = {
            "id": new_id("vs_", 12), "object": "vector_store", "created_at": now, "name": payload.get("name"),
            "expires_after": payload.get("expires_after"), "expires_at": None, "last_active_at": now,
            "metadata": payload.get("metadata") or {},
        }  # fmt: skip
        store = _Store(view)
        self.stores[view["id"]] = store
        for file_id in _file_ids(payload):
            self._attach(store, file_id, {}, None)
        await call.json(200, self.store_view(store))

    async def list(self, call: Call, query: dict[str, str]) -> None:
        await call.json(200, _page([self.store_view(s) for s in self.stores.values()], query))

    async def retrieve(self, call: Call, store_id: str) -> None:
        await call.json(200, self.store_view(self._store(store_id)))

    async def modify(self, call: Call, store_id: str, payload: dict[str, Any]) -> None:
        store = self._store(store_id)
        for name in ("name", "metadata", "expires_after"):
            if name in payload:
                store.view[name] = payload[name]
        await call.json(200, self.store_view(store))

    async def delete(self, call: Call, store_id: str) -> None:
        self._store(store_id)
        del self.stores[store_id]
        await call.json(200, {"id": store_id, "object": "vector_store.deleted", "deleted": True})

    async def search(self, call: Call, store_id: str, payload: dict[str, Any]) -> None:
        store = self._store(store_id)
        query = payload.get("query")
        queries = [query] if isinstance(query, str) else query
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) for q in queries):
            raise ApiError(400, "Invalid 'query': expected a string or an array of strings.", param="query")
        most = payload.get("max_num_results", 10)
        if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= 50:
            raise ApiError(400, "Invalid 'max_num_results': it must be between 1 and 50.", param="max_num_results")
        words = {w.lower() for q in queries for w in _WORD.findall(q)}
        hits: list[tuple[float, int, dict[str, Any]]] = []
        for order, item in enumerate(store.files.values()):
            if item.status() != "completed" or not _matches(item.attributes, payload.get("filters")):
                continue
            for start in range(0, len(item.text), _CHUNK_CHARS):
                chunk = item.text[start : start + _CHUNK_CHARS]
                found = {w.lower() for w in _WORD.findall(chunk)} & words
                if found:
                    score = round(len(found) / len(words), 4)
                    result = {
                        "file_id": item.file_id, "filename": item.filename, "score": score,
                        "attributes": item.attributes, "content": [{"type": "text", "text": chunk}],
                    }  # fmt: skip
                    hits.append((-score, order * 1_000_000 + start, result))
        hits.sort(key=lambda hit: hit[:2])
        data = [hit[2] for hit in hits[:most]]
        await call.json(
            200,
            {
                "object": "vector_store.search_results.page",
                "search_query": queries,
                "data": data,
                "has_more": False,
                "next_page": None,
            },
        )

    # -- files of a store -----------------------------------------------------------------------------------------

    def _attach(self, store: _Store, file_id: Any, attributes: Any, batch_id: str | None) -> _StoreFile:
        if not isinstance(file_id, str):
            raise ApiError(400, "Invalid 'file_id': expected a string.", param="file_id")
        file = self.files.get(file_id)
        data = _head(self.files, file_id)
        item = _StoreFile(
            file_id=file_id,
            filename=str(file.get("filename") or ""),
            text=data[:_MAX_TEXT_BYTES].decode("utf-8", errors="replace"),
            created_at=int(time.time()),
            ready_at=time.monotonic() + self.index_seconds,
            attributes=attributes if isinstance(attributes, dict) else {},
            batch_id=batch_id,
        )
        store.files[file_id] = item
        store.view["last_active_at"] = int(time.time())
        return item

    async def add_file(self, call: Call, store_id: str, payload: dict[str, Any]) -> None:
        store = self._store(store_id)
        item = self._attach(store, payload.get("file_id"), payload.get("attributes"), None)
        await call.json(200, self.file_view(store_id, item))

    async def list_files(self, call: Call, store_id: str, query: dict[str, str], batch_id: str | None = None) -> None:
        store = self._store(store_id)
        items = [f for f in store.files.values() if batch_id is None or f.batch_id == batch_id]
        wanted = query.get("filter")
        views = [self.file_view(store_id, f) for f in items if wanted in (None, f.status())]
        await call.json(200, _page(views, query))

    async def retrieve_file(self, call: Call, store_id: str, file_id: str) -> None:
        store = self._store(store_id)
        await call.json(200, self.file_view(store_id, self._file(store, file_id)))

    async def update_file(self, call: Call, store_id: str, file_id: str, payload: dict[str, Any]) -> None:
        store = self._store(store_id)
        item = self._file(store, file_id)
        attributes = payload.get("attributes")
        if not isinstance(attributes, dict):
            raise ApiError(400, "Missing required parameter: 'attributes'.", param="attributes")
        item.attributes = attributes
        await call.json(200, self.file_view(store_id, item))

    async def delete_file(self, call: Call, store_id: str, file_id: str) -> None:
        store = self._store(store_id)
        self._file(store, file_id)
        del store.files[file_id]
        await call.json(200, {"id": file_id, "object": "vector_store.file.deleted", "deleted": True})

    async def file_content(self, call: Call, store_id: str, file_id: str) -> None:
        item = self._file(self._store(store_id), file_id)
        data = [{"type": "text", "text": item.text}] if item.status() == "completed" else []
        await call.json(
            200, {"object": "vector_store.file_content.page", "data": data, "has_more": False, "next_page": None}
        )

    # -- file batches ---------------------------------------------------------------------------------------------

    async def create_batch(self, call: Call, store_id: str, payload: dict[str, Any]) -> None:
        store = self._store(store_id)
        files = payload.get("files")
        entries = (
            [(f.get("file_id"), f.get("attributes", payload.get("attributes"))) for f in files if isinstance(f, dict)]
            if isinstance(files, list)
            else [(file_id, payload.get("attributes")) for file_id in _file_ids(payload)]
        )
        if not entries:
            raise ApiError(400, "Missing required parameter: 'file_ids'.", param="file_ids")
        for file_id, _ in entries:
            self.files.get(str(file_id))
        batch: dict[str, Any] = {
            "id": new_id("vsfb_", 12), "object": "vector_store.files_batch", "created_at": int(time.time()),
            "vector_store_id": store_id,
        }  # fmt: skip
        self.batches[batch["id"]] = batch
        for file_id, attributes in entries:
            self._attach(store, file_id, attributes, batch["id"])
        await call.json(200, self.batch_view(batch))

    def _batch(self, store_id: str, batch_id: str) -> dict[str, Any]:
        batch = self.batches.get(batch_id)
        if batch is None or batch["vector_store_id"] != store_id:
            raise ApiError(404, f"No file batch found with id '{batch_id}'.", param="batch_id")
        return batch

    async def retrieve_batch(self, call: Call, store_id: str, batch_id: str) -> None:
        await call.json(200, self.batch_view(self._batch(store_id, batch_id)))

    async def cancel_batch(self, call: Call, store_id: str, batch_id: str) -> None:
        batch = self._batch(store_id, batch_id)
        store = self._store(store_id)
        if self.batch_view(batch)["status"] == "in_progress":
            batch["cancelled"] = True
            for item in store.files.values():
                if item.batch_id == batch_id and item.status() == "in_progress":
                    item.cancelled = True
        await call.json(200, self.batch_view(batch))

    async def list_batch_files(self, call: Call, store_id: str, batch_id: str, query: dict[str, str]) -> None:
        self._batch(store_id, batch_id)
        await self.list_files(call, store_id, query, batch_id)


def _head(files: FileStore, file_id: str) -> bytes:
    """The first ``_MAX_TEXT_BYTES`` of a file (what the toy index reads of it)."""
    chunks: list[bytes] = []
    size = 0
    for line in files.read_lines(file_id):
        chunks.append(line)
        size += len(line)
        if size >= _MAX_TEXT_BYTES:
            break
    return b"".join(chunks)


def _file_ids(payload: dict[str, Any]) -> list[Any]:
    file_ids = payload.get("file_ids")
    if file_ids is None:
        return []
    if not isinstance(file_ids, list):
        raise ApiError(400, "Invalid 'file_ids': expected an array of strings.", param="file_ids")
    return file_ids


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """OpenAI's cursor page over ``items`` (in creation order), with ``order``, ``after``, ``before`` and ``limit``."""
    ordered = sorted(items, key=lambda item: (item["created_at"], item["id"]), reverse=query.get("order") != "asc")
    ids = [item["id"] for item in ordered]
    if query.get("after") in ids:
        ordered = ordered[ids.index(query["after"]) + 1 :]
    elif query.get("before") in ids:
        ordered = ordered[: ids.index(query["before"])]
    try:
        limit = min(max(int(query.get("limit", "20")), 1), 100)
    except ValueError:
        raise ApiError(400, "Invalid 'limit': expected an integer.", param="limit") from None
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }


def _matches(attributes: dict[str, Any], condition: Any) -> bool:
    """OpenAI's attribute filters: a comparison (``eq``, ``ne``, ``gt``, ...) or a compound ``and``/``or``."""
    if not isinstance(condition, dict):
        return True
    kind = condition.get("type")
    if kind in ("and", "or"):
        parts = [_matches(attributes, c) for c in condition.get("filters") or ()]
        return all(parts) if kind == "and" else any(parts)
    compare = _COMPARISONS.get(str(kind))
    if compare is None:
        raise ApiError(400, f"Invalid filter type {kind!r}.", param="filters")
    value = attributes.get(str(condition.get("key")))
    try:
        return value is not None and bool(compare(value, condition.get("value")))
    except TypeError:
        return False
