"""Encryption at rest of tenants' own upstream keys (BYOK).

Fernet (AES-128-CBC + HMAC-SHA256) under a key derived with HKDF from TENANTGATE_SECRET_KEY, so there is one
server secret to manage. Rotating that secret makes stored upstream keys unreadable, as it does API keys.

``cryptography``'s bindings (about 7 MB of a worker's memory) are loaded on first use: a gateway whose tenants
keep no keys of their own never needs them.
"""

from __future__ import annotations

import base64
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


class SecretBox:
    def __init__(self, secret_key: bytes) -> None:
        self._secret_key = secret_key

    @cached_property
    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tenantgate", info=b"tenant-upstream-keys")
        return Fernet(base64.urlsafe_b64encode(hkdf.derive(self._secret_key)))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str | None:
        """None if the value was encrypted under another secret key."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            return None
