"""A worker's memory: importing the app leaves out what only some deployments use (see bench/README.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_LEFT_OUT = (
    "cryptography.fernet",  # tenants' own upstream keys: loaded on first encrypt/decrypt (~7 MB)
    "alembic",  # migrations run before serving, from the CLI
    "unittest.mock",
)


@pytest.mark.parametrize("module", _LEFT_OUT)
def test_importing_the_app_does_not_load(module: str) -> None:
    code = f"import sys, tenantgate.platform.app; print({module!r} in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def test_the_secret_box_loads_its_cipher_when_first_used() -> None:
    code = (
        "import sys; from tenantgate.tenants.secrets import SecretBox; box = SecretBox(b'k' * 32); "
        "before = 'cryptography.fernet' in sys.modules; sealed = box.encrypt('sk-upstream'); "
        "print(before, 'cryptography.fernet' in sys.modules, box.decrypt(sealed), SecretBox(b'x' * 32).decrypt(sealed))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "sk-upstream", "None"]
