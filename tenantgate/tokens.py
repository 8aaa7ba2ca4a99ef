"""Token counting for estimates: TPM admission before forwarding, and usage when the upstream never reported it.

By default (``TENANTGATE_TOKEN_ESTIMATES=heuristic``) text counts 1 token per 4 characters, rounded up: OpenAI's rule
of thumb for English text, and how OpenAI's own rate limiter estimates a request ("the maximum of max_tokens and the
estimated number of tokens based on the character count of your request"). No tokenizer is loaded.

``configure("tiktoken")`` counts with tiktoken and the BPE files shipped in ``tenantgate/data`` (no download at run
time) for models whose encoding is known, and with the heuristic for the others. An encoding costs 1-2 s of CPU and
tens of MB to load (o200k_base: about 46 MB kept, 70 MB while it is built). ``tenantgate serve`` then builds
o200k_base, the encoding of every current OpenAI family, before it imports the app (``preload``), so the build's
transient memory is reused by the imports instead of adding to the process's peak, and the first requests are
estimated exactly. Any other encoding is loaded once a model of its family is seen, in a background thread: until it
is ready (the first second or so), estimates use the heuristic. The event loop never waits for it. ``warm_up()``
loads them all synchronously (tests, benchmarks).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import math
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tiktoken

    from tenantgate.settings import TokenEstimates

_DATA = Path(__file__).parent / "data"
_EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# Longest prefix wins. Newer OpenAI families use o200k_base; older chat and embedding models cl100k_base.
_MODEL_PREFIXES = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)
CHARS_PER_TOKEN = 4
# Chat formatting overhead per message and per reply (OpenAI cookbook, "How to count tokens").
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3

PRELOADED = ("o200k_base",)

_lock = threading.Lock()
_use_tiktoken = False


@lru_cache(maxsize=1024)  # model names come from requests: bounded; the scan below runs per request otherwise
def encoding_name_for_model(model: str) -> str | None:
    best: tuple[int, str] | None = None
    for prefix, name in _MODEL_PREFIXES:
        if model.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), name)
    return best[1] if best else None


_loaded: dict[str, tiktoken.Encoding] = {}
_loading: set[str] = set()


def _load_in_background(name: str) -> None:
    with _lock:
        if name in _loading or name in _loaded:
            return
        _loading.add(name)
    threading.Thread(target=_encoding, args=(name,), name=f"tiktoken-{name}", daemon=True).start()


@lru_cache(maxsize=4)
def _encoding(name: str) -> tiktoken.Encoding:
    import tiktoken  # imported here: a worker with heuristic estimates never loads it (about 1.4 MB)
    from tiktoken_ext import openai_public

    with _lock:
        raw = gzip.decompress((_DATA / f"{name}.tiktoken.gz").read_bytes())
        if hashlib.sha256(raw).hexdigest() != _EXPECTED_SHA256[name]:
            raise RuntimeError(f"vendored tokenizer file {name} is corrupt")
        # Line by line from a stream rather than from raw.splitlines(): the 200k-line list would add ~6 MB to the
        # peak memory of building the table (tiktoken wants the ranks as a dict; its Rust core copies them).
        ranks = {}
        for line in io.BytesIO(raw):
            token, _, rank = line.partition(b" ")
            if token.strip():
                ranks[base64.b64decode(token)] = int(rank)
        del raw
        # Reuse tiktoken's own definition of the encoding (pattern, special tokens), only with our ranks: its
        # loader is swapped for the call (under the lock, so no other load sees the swap).
        download = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
        try:
            params = getattr(openai_public, name)()
        finally:
            openai_public.load_tiktoken_bpe = download
        encoding = tiktoken.Encoding(**params)
        # The Rust core keeps its own copy of the ranks; encoding never reads the Python one (~30 MB) again.
        encoding._mergeable_ranks = {}
        _loaded[name] = encoding
        return encoding


def configure(estimates: TokenEstimates) -> None:
    """Process-wide: ``tiktoken`` counts with the model's encoding where it is known, ``heuristic`` (the default)
    never does."""
    global _use_tiktoken
    _use_tiktoken = estimates == "tiktoken"


def preload() -> None:
    """Builds the encodings most requests need now, synchronously (a serving process, before the app is imported)."""
    if _use_tiktoken:
        for name in PRELOADED:
            _encoding(name)


def encoding_for_model(model: str | None) -> tiktoken.Encoding | None:
    """The model's encoding if it is loaded; otherwise starts loading it and answers None for now."""
    name = encoding_name_for_model(model) if model and _use_tiktoken else None
    if name is None:
        return None
    encoding = _loaded.get(name)
    if encoding is None:
        _load_in_background(name)
    return encoding


def warm_up() -> None:
    for name in _EXPECTED_SHA256:
        _encoding(name)


def count_text(text: str, model: str | None) -> int:
    if not text:
        return 0
    encoding = encoding_for_model(model)
    if encoding is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    return len(encoding.encode_ordinary(text))  # = encode(text, disallowed_special=()), minus the checks


def _texts(value: Any) -> Iterable[str]:
    """The text inside an OpenAI content value: a string, or parts with ``text``/``input_text``."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for part in value:
            if isinstance(part, str):
                yield part
            elif isinstance(part, dict):
                for field in ("text", "content", "input_text"):
                    inner = part.get(field)
                    if isinstance(inner, str | list):
                        yield from _texts(inner)


def estimate_prompt_tokens(payload: dict[str, Any], model: str | None) -> int:
    """Input tokens of a request body of any OpenAI endpoint (chat, completions, embeddings, responses)."""
    total = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            total += TOKENS_PER_MESSAGE
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    total += count_text(content, model)
                else:
                    total += sum(count_text(t, model) for t in _texts(content))
        total += TOKENS_PER_REPLY
    for field in ("prompt", "input", "instructions"):
        value = payload.get(field)
        if isinstance(value, list) and value and isinstance(value[0], int):
            total += len(value)  # already tokenized
        elif isinstance(value, list) and value and isinstance(value[0], list):
            total += sum(len(item) for item in value if isinstance(item, list))  # several prompts, tokenized
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            total += sum(count_text(t, model) for item in value for t in _texts(item.get("content")))
        else:
            total += sum(count_text(t, model) for t in _texts(value))
    return total
