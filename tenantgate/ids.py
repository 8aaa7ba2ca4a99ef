"""Prefixed, time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Time order makes keyset pagination and "newest first" listings cheap; the prefix tells a reader what an id is.
Ids are unique, not secret (keys and tokens come from ``secrets``), so the random part comes from ``random``, which
is reseeded in every forked worker; one is minted per proxied request, and this takes about 2 us.
"""

from __future__ import annotations

import time
from random import getrandbits

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two digits (10 bits) per lookup: 13 lookups for the 26 digits (130 bits, the top two always zero).
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def new_id(prefix: str) -> str:
    value = int(time.time() * 1000) << 80 | getrandbits(80)
    return prefix + "_" + "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])
