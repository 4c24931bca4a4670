"""``/ui/``: the dashboard page, its shared (embeddable) form and its static files.

The page is static HTML and JavaScript with ECharts vendored under
``api/static/vendor`` (no build step, no network at run time); it reads
everything through the API with the key the user pastes (kept in the
browser) or, at ``/ui/shared#<token>``, with a share token. The page sends
``frame-ancestors 'self'``; the shared page may be framed by any site (an
embed), since it carries no key and shows one dashboard read-only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from prometheus_client import CollectorRegistry, Counter

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors {ancestors}"
)


def ui_router(registry: CollectorRegistry) -> APIRouter:
    """The page's routes, counting page loads into ``registry``."""
    loads = Counter("riffle_ui_page_loads", "Dashboard pages served.", ["page"], registry=registry)
    router = APIRouter(include_in_schema=False)

    @router.get("/ui")
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @router.get("/ui/")
    def ui_page() -> FileResponse:
        loads.labels("dashboard").inc()
        return _page("'self'")

    @router.get("/ui/shared")
    def ui_shared() -> FileResponse:
        loads.labels("shared").inc()
        return _page("*")

    return router


def _page(ancestors: str) -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={
            "Content-Security-Policy": _CSP.format(ancestors=ancestors),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )
