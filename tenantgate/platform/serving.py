"""The app factory ``tenantgate serve`` gives uvicorn, in each serving process.

The tokenizer is built before the app is imported: the ~25 MB that building it holds for a moment are then freed
for the app's imports to reuse, instead of adding to the process's peak memory on top of them (a process that
imports the app and builds o200k_base peaks at 170 MB building it after the imports, 141 MB before). It also
means the first requests are estimated exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantgate import tokens
from tenantgate.settings import Settings

if TYPE_CHECKING:
    from tenantgate.platform.app import GatewayApp


def create_app() -> GatewayApp:
    settings = Settings()
    tokens.configure(settings.token_estimates)
    tokens.preload()
    from tenantgate.platform.app import create_app as build  # after the tokenizer: see above

    return build(settings)
