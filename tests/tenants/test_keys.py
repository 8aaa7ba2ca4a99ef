"""Key hashing: HMAC-SHA256 under the deployment's secret, whatever secrets a process has hashed with before."""

from __future__ import annotations

import hmac

from tenantgate.tenants.keys import generate_key, hash_key


def test_hash_is_hmac_sha256_of_the_key_under_the_secret() -> None:
    # RFC 4231, test case 2
    digest = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hash_key(b"Jefe", "what do ya want for nothing?") == digest


def test_each_secret_hashes_with_its_own_key() -> None:
    """The keyed HMAC is reused per secret: hashing under one secret must never leak into another's results."""
    secrets = [b"a" * 32, b"b" * 32, b"a" * 32 + b"\x00", b"Jefe"]
    plaintexts = ["tg-" + "x" * 43, "tg-" + "y" * 43, ""]
    for _ in range(2):
        for secret in secrets:
            for plaintext in plaintexts:
                expected = hmac.new(secret, plaintext.encode(), "sha256").hexdigest()
                assert hash_key(secret, plaintext) == expected


def test_a_generated_key_carries_its_hash() -> None:
    key = generate_key(b"s" * 32)
    assert key.key_hash == hash_key(b"s" * 32, key.plaintext)
    assert key.key_hash != hash_key(b"t" * 32, key.plaintext)
    assert key.plaintext.startswith("tg-") and key.prefix == key.plaintext[:11]
