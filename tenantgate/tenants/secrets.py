"""Encryption at rest of tenants' own upstream keys (BYOK).

Fernet (AES-128-CBC + HMAC-SHA256) under a key derived with HKDF from TENANTGATE_SECRET_KEY, so there is one
server secret to manage. Rotating that secret makes stored upstream keys unreadable, as it does API keys.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    def __init__(self, secret_key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tenantgate", info=b"tenant-upstream-keys").derive(
            secret_key
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str | None:
        """None if the value was encrypted under another secret key."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            return None
