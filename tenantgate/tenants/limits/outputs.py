"""The most output tokens a model may produce per answer: what a request that gives no output cap may spend, held
against a monthly token quota or budget until it ends (limits/hook.py).

Published maximums of OpenAI's models; names match exactly or as a dated snapshot (``gpt-4o-2024-08-06``), never by
an arbitrary prefix. Any other model holds ``TENANTGATE_DEFAULT_MAX_OUTPUT_TOKENS``.
"""

from __future__ import annotations

import re

MAX_OUTPUT_TOKENS = {
    "gpt-5": 128_000, "gpt-5-mini": 128_000, "gpt-5-nano": 128_000, "gpt-5-pro": 272_000, "gpt-5-chat-latest": 16_384,
    "gpt-4.1": 32_768, "gpt-4.1-mini": 32_768, "gpt-4.1-nano": 32_768,
    "gpt-4o": 16_384, "gpt-4o-mini": 16_384, "chatgpt-4o-latest": 16_384,
    "gpt-4o-audio-preview": 16_384, "gpt-4o-mini-audio-preview": 16_384,
    "gpt-4-turbo": 4_096, "gpt-4": 8_192, "gpt-3.5-turbo": 4_096, "gpt-4.5-preview": 16_384,
    "o1": 100_000, "o1-pro": 100_000, "o1-mini": 65_536,
    "o3": 100_000, "o3-pro": 100_000, "o3-mini": 100_000, "o4-mini": 100_000,
}  # fmt: skip
_DATED = re.compile(r"^(?P<name>.+)-\d{4}-\d{2}-\d{2}$")


def max_output_tokens(model: str, default: int) -> int:
    known = MAX_OUTPUT_TOKENS.get(model)
    if known is None and (dated := _DATED.match(model)) is not None:
        known = MAX_OUTPUT_TOKENS.get(dated.group("name"))
    return default if known is None else known
