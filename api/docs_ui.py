"""``/docs``: Swagger UI from files inside the package, so the page works offline.

FastAPI's default page loads Swagger UI from a CDN (and ReDoc from another),
which leaves ``/docs`` blank without internet. The assets of npm
``swagger-ui-dist`` (version in ``static/swagger-ui/VERSION``, Apache-2.0,
``LICENSE`` and ``NOTICE`` beside them) are vendored unmodified and served
under ``/docs/assets``; the page references nothing outside the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI over ``app.openapi_url``) and its assets."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )
