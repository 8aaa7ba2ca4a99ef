"""Identifiers: prefixed ULIDs in Crockford base32, ordered by creation time."""

from __future__ import annotations

import time

from tenantgate.ids import new_id

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _millis(identifier: str) -> int:
    value = 0
    for char in identifier.split("_", 1)[1]:
        value = value * 32 + _CROCKFORD.index(char)
    return value >> 80


def test_ids_carry_their_prefix_and_26_crockford_digits_that_encode_the_creation_time() -> None:
    before = int(time.time() * 1000)
    identifier = new_id("evt")
    after = int(time.time() * 1000)
    prefix, body = identifier.split("_", 1)
    assert prefix == "evt" and len(body) == 26 and set(body) <= set(_CROCKFORD)
    assert before <= _millis(identifier) <= after


def test_ids_sort_by_creation_time_and_do_not_repeat() -> None:
    earlier = [new_id("req") for _ in range(1000)]
    time.sleep(0.002)
    later = new_id("req")
    assert len(set(earlier)) == 1000
    assert all(identifier < later for identifier in earlier)
