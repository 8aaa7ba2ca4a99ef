"""OpenAI's duration format for x-ratelimit-reset-* and retry messages."""

from __future__ import annotations

import pytest

from tenantgate.platform.limits.responses import format_duration


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (12, "12ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (8_640, "8.64s"),
        (59_999, "59.999s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (61_250, "1m1.25s"),
        (3_723_000, "1h2m3s"),
        (86_400_000, "24h0m0s"),
    ],
)
def test_durations_read_like_openais(ms: int, text: str) -> None:
    assert format_duration(ms) == text
