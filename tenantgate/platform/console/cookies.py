"""The console's session cookie and its CSRF token (the HTTP side of tenants/console_sessions.py).

The cookie is ``Secure``, ``HttpOnly`` and ``SameSite=Strict`` with the ``__Host-`` prefix (no ``Domain``, path
``/``): scripts cannot read it, other sites cannot send it, a subdomain cannot set it. Writes made with it must
also carry ``X-CSRF-Token``: an HMAC of the session under the server secret, which the console reads from
``GET /console/api/session``; a page of another origin can neither read it nor make the browser send it.
"""

from __future__ import annotations

import hashlib
import hmac

SESSION_COOKIE = "__Host-tenantgate-console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(secret_key: bytes, session_value: str) -> str:
    return hmac.new(secret_key, b"console-csrf:" + session_value.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret_key: bytes, session_value: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(secret_key, session_value), presented)
