"""Bearer-token authentication of the admin API (constant-time comparison)."""

from __future__ import annotations

import hmac

from fastapi import Request

from tenantgate.platform.errors import InvalidApiKey
from tenantgate.platform.runtime import Runtime


def require_admin(request: Request) -> None:
    runtime: Runtime = request.app.state.runtime
    expected = runtime.settings.admin_token
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if expected is None:
        raise InvalidApiKey(
            "The admin API is disabled: set TENANTGATE_ADMIN_TOKEN to enable it.", code="admin_disabled"
        )
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.get_secret_value().encode()
    ):
        raise InvalidApiKey("Invalid admin token.")
