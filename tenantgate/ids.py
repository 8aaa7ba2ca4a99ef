"""Prefixed, time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Time order makes keyset pagination and "newest first" listings cheap; the prefix tells a reader what an id is.
"""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# base64's RFC 4648 base32 digits -> Crockford's (lower case), so the C encoder does the work.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_id(prefix: str) -> str:
    # 128 bits in 20 bytes (160 bits = 32 base32 digits): the last 26 digits are the ULID, the first 6 are zeros.
    raw = (int(time.time() * 1000) << 80 | int.from_bytes(os.urandom(10), "big")).to_bytes(20, "big")
    return f"{prefix}_{base64.b32encode(raw)[6:].translate(_TO_CROCKFORD).decode()}"
