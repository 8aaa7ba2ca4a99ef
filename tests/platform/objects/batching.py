"""Helpers of the batch tests: input files, waiting for a batch to end, and what the output file says it used."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import openai
import orjson
from openai.types import Batch

# OpenAI's list prices (USD per 1M tokens, 2025) of the models the tests batch; the Batch API costs half.
LIST_PRICES = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")), "gpt-4o": (Decimal("2.50"), Decimal("10.00"))}


def line(custom_id: str, model: str, text: str, url: str = "/v1/chat/completions", **body: Any) -> dict[str, Any]:
    payload = {"model": model, "messages": [{"role": "user", "content": text}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": payload}


def jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in lines)


def two_model_lines(count: int) -> list[dict[str, Any]]:
    models = ("gpt-4o-mini", "gpt-4o")
    return [line(f"req-{i}", models[i % 2], f"line {i} " + "words " * (i % 7)) for i in range(count)]


def upload_input(client: openai.OpenAI, lines: Iterable[dict[str, Any]]) -> str:
    return client.files.create(file=("input.jsonl", io.BytesIO(jsonl(lines))), purpose="batch").id


def create(client: openai.OpenAI, file_id: str, **extra: Any) -> Batch:
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", **extra
    )


def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ended(client: openai.OpenAI, batch_id: str, timeout: float = 30) -> Batch:
    def ended() -> Batch | None:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None

    ended_batch: Batch = wait_until(ended, timeout, f"batch {batch_id} to end")
    return ended_batch


def output_usage(client: openai.OpenAI, file_id: str) -> dict[str, dict[str, int]]:
    """Per model: lines, input and output tokens, as the batch's output file reports them."""
    totals: dict[str, dict[str, int]] = {}
    for raw in client.files.content(file_id).read().splitlines():
        body = orjson.loads(raw)["response"]["body"]
        entry = totals.setdefault(body["model"], {"lines": 0, "input": 0, "output": 0})
        entry["lines"] += 1
        entry["input"] += body["usage"]["prompt_tokens"]
        entry["output"] += body["usage"]["completion_tokens"]
    return totals


def batch_cost(totals: dict[str, dict[str, int]]) -> Decimal:
    """What the lines cost at batch prices (half the list price), computed here from the list prices above."""
    total = Decimal(0)
    for model, entry in totals.items():
        price_in, price_out = LIST_PRICES[model]
        total += (entry["input"] * price_in + entry["output"] * price_out) / 2 / 1_000_000
    return total
