"""Prefixed, time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Time order makes keyset pagination and "newest first" listings cheap; the prefix tells a reader what an id is.
Ids are unique, not secret (keys and tokens come from ``secrets``), so the random part comes from a private
``random.Random`` (seeded from the OS, reseeded in forked children); one id is minted per proxied request, and this
takes about 2 us. A private generator, not the ``random`` module's: code that seeds or tracks the global one (tests,
hypothesis) neither changes our ids nor is disturbed by them.
"""

from __future__ import annotations

import os
import random
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two digits (10 bits) per lookup: 13 lookups for the 26 digits (130 bits, the top two always zero).
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)


def new_id(prefix: str) -> str:
    value = int(time.time() * 1000) << 80 | _random.getrandbits(80)
    return prefix + "_" + "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])
