"""Token estimates: 1 token per 4 characters by default; with ``tiktoken``, the model's encoding for known families
once loaded (in the background), the heuristic until then."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tenantgate import tokens
from tenantgate.settings import Settings


@pytest.fixture
def exact() -> Iterator[None]:
    """``TENANTGATE_TOKEN_ESTIMATES=tiktoken`` for one test (the mode is per process)."""
    previous = tokens._use_tiktoken
    tokens.configure("tiktoken")
    yield
    tokens._use_tiktoken = previous


def test_the_default_counts_characters_as_openais_rate_limiter_does() -> None:
    assert Settings.model_fields["token_estimates"].default == "heuristic"
    tokens.warm_up()  # even with the encodings in memory
    tokens.configure("heuristic")
    assert tokens.count_text("hello world", "gpt-4o-mini") == 3  # ceil(11 / 4); tiktoken would say 2
    assert tokens.estimate_prompt_tokens({"messages": [{"role": "user", "content": "hello world"}]}, "gpt-4o") == 9


@pytest.mark.usefixtures("exact")
def test_known_families_use_tiktoken_and_unknown_ones_the_heuristic() -> None:
    tokens.warm_up()
    assert tokens.count_text("hello world, how are you?", "gpt-4o-mini") == 7
    assert tokens.count_text("hello world, how are you?", "gpt-4") == 7
    assert tokens.count_text("x" * 10, "llama3") == 3  # ceil(10 / 4)
    assert tokens.estimate_prompt_tokens({"messages": [{"role": "user", "content": "hello world"}]}, "gpt-4o") == 8


@pytest.mark.usefixtures("exact")
def test_an_encoding_not_yet_loaded_never_blocks_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_loaded", {})
    monkeypatch.setattr(tokens, "_loading", set())
    tokens._encoding.cache_clear()
    started = time.perf_counter()
    assert tokens.count_text("hello world", "gpt-4o-mini") == 3  # heuristic: ceil(11 / 4)
    assert time.perf_counter() - started < 0.05
    deadline = time.monotonic() + 30
    while tokens.encoding_for_model("gpt-4o-mini") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tokens.count_text("hello world", "gpt-4o-mini") == 2
