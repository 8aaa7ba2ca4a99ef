"""Tenant API key format and hashing.

A key is ``tg-`` followed by 43 url-safe characters (256 random bits). Only ``HMAC-SHA256(secret_key, key)``
is stored, so a database leak reveals no usable key and lookups are a single indexed equality.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "tg-"
_DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 8


@dataclass(frozen=True, slots=True)
class NewKey:
    plaintext: str
    prefix: str
    key_hash: str


def hash_key(secret_key: bytes, plaintext: str) -> str:
    return hmac.digest(secret_key, plaintext.encode(), "sha256").hex()


def generate_key(secret_key: bytes) -> NewKey:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(plaintext=plaintext, prefix=plaintext[:_DISPLAY_PREFIX_LEN], key_hash=hash_key(secret_key, plaintext))
