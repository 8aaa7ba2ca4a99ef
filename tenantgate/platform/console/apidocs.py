"""``/docs``: the admin, usage and ops API's Swagger UI, with its script and stylesheet served by the gateway.

FastAPI's own page loads Swagger UI from a CDN, which a gateway offline or behind a firewall cannot reach. The
console's build copies npm's swagger-ui-dist beside its own files (console/vite.config.ts), and this page points
at those, so the API docs work wherever the gateway does.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from tenantgate.platform.console.routes import CONSOLE_PATH

router = APIRouter(include_in_schema=False)
DOCS_PATH = "/docs"
_ASSETS = CONSOLE_PATH + "/assets/"


@router.get(DOCS_PATH, response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} API",
        swagger_js_url=_ASSETS + "swagger-ui-bundle.js",
        swagger_css_url=_ASSETS + "swagger-ui.css",
        swagger_favicon_url=_ASSETS + "favicon-32x32.png",
        # No validator badge: it would send the spec's URL to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
