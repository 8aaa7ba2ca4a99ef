"""Tenant API key format and hashing.

A key is ``tg-`` followed by 43 url-safe characters (256 random bits). Only ``HMAC-SHA256(secret_key, key)``
is stored, so a database leak reveals no usable key and lookups are a single indexed equality.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache

KEY_PREFIX = "tg-"
_DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 8


@dataclass(frozen=True, slots=True)
class NewKey:
    plaintext: str
    prefix: str
    key_hash: str


def hash_key(secret_key: bytes, plaintext: str) -> str:
    """HMAC-SHA256 of the key, hex. Every request hashes the key it presents: from an HMAC keyed once per secret and
    copied, not with ``hmac.digest``, whose one-shot OpenSSL call lets go of the interpreter lock. On the event
    loop each such let-go hands the lock to any background thread that wants it (span or metric export, the
    metering writer's file work), and the request then waits up to the switch interval to get it back."""
    mac = _keyed(secret_key).copy()
    mac.update(plaintext.encode())
    return mac.hexdigest()


@lru_cache(maxsize=4)
def _keyed(secret_key: bytes) -> hmac.HMAC:
    return hmac.new(secret_key, digestmod="sha256")


def generate_key(secret_key: bytes) -> NewKey:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(plaintext=plaintext, prefix=plaintext[:_DISPLAY_PREFIX_LEN], key_hash=hash_key(secret_key, plaintext))
