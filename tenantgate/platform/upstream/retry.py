"""When and how long to retry an upstream, in one place (mirrors the openai SDK's own rules).

Retried, as long as no byte went to the client: connection errors, timeouts before the first byte, 408, 409,
429 and 5xx. The wait honours ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date), else capped
exponential backoff with jitter. A wait longer than the configured cap is not sat out: the next deployment is
tried instead (failover), and the last one's answer is returned.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 409, 429})
INITIAL_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 2.0


def should_retry_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def backoff(retry_number: int) -> float:
    """Delay before retry ``retry_number`` (0-based): exponential, capped, with up to 25% jitter off."""
    delay: float = min(INITIAL_BACKOFF_SECONDS * 2**retry_number, MAX_BACKOFF_SECONDS)
    return delay * (1 - 0.25 * random.random())


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The upstream's requested wait in seconds, if it stated one."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
