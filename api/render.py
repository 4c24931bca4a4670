"""Server-side rendering of panels and dashboards with headless Chromium.

The page itself draws the chart (the same ECharts code a browser runs), so
an export looks exactly like the panel on screen: PNG is a screenshot of the
panel, SVG is ECharts' own SVG of it (``renderToSVGString``), the PDF is
Chromium's print of the whole dashboard with vector (SVG) charts. Chromium
loads the page as a share link made for the render and revoked after it
(:mod:`api.routes.export`). Each render starts a browser (about a second);
renders are timed in ``riffle_render_duration_seconds{format}``.

Needs Debian's ``chromium`` (or ``RIFFLE_CHROMIUM``) and the ``playwright``
package; without them a render raises :class:`RenderUnavailableError` (``503``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from riffle.config.errors import RiffleError

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROW_PX = 90
"""Height of one grid row of a panel (80 px and the 10 px gap)."""


class RenderUnavailableError(RiffleError):
    """No browser to render with (Chromium or playwright missing), or it failed."""


def chromium_path() -> str | None:
    """The Chromium binary: ``RIFFLE_CHROMIUM``, else ``chromium`` on the PATH."""
    return (
        os.environ.get("RIFFLE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


class Renderer:
    """Renders through the API at ``base_url``; durations go to ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = Histogram(
            "riffle_render_duration_seconds",
            "Time to render an export (browser start included).",
            ["format"],
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32),
            registry=registry,
        )

    def panel(
        self, url: str, token: str, fmt: str, height_rows: int, *, theme: str = "light"
    ) -> bytes:
        """One panel (``url`` is ``/ui/shared?panel=…``) as ``png`` or ``svg`` bytes."""
        size = {"width": 1000, "height": max(2, height_rows) * ROW_PX}

        def work(page: Any) -> bytes:
            if fmt == "svg":
                svg = page.evaluate("window.riffleSvg()")
                if not svg:
                    raise RenderUnavailableError("the panel drew no chart to export as SVG")
                return str(svg).encode()
            return bytes(page.locator(".panel").first.screenshot())

        renderer = "svg" if fmt == "svg" else "canvas"
        return self._run(fmt, f"{url}&renderer={renderer}&theme={theme}#{token}", size, work)

    def dashboard_pdf(self, url: str, token: str, *, theme: str = "light") -> bytes:
        """The whole dashboard (``url`` is ``/ui/shared?print=1``) as a landscape A4 PDF."""

        def work(page: Any) -> bytes:
            page.emulate_media(media="screen")
            return bytes(page.pdf(format="A4", landscape=True, print_background=True, scale=0.6))

        size = {"width": 1400, "height": 1000}
        return self._run("pdf", f"{url}&theme={theme}#{token}", size, work)

    def _run(
        self, fmt: str, url: str, viewport: dict[str, int], work: Callable[[Any], bytes]
    ) -> bytes:
        binary = chromium_path()
        if binary is None:
            raise RenderUnavailableError("no chromium to render with: apt-get install chromium")
        try:
            from playwright.sync_api import Error as PlaywrightError
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            raise RenderUnavailableError("the playwright package is not installed") from exc
        began = time.perf_counter()
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
                    page.goto(url)
                    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
                    page.wait_for_timeout(300)
                    return work(page)
                finally:
                    browser.close()
        except PlaywrightError as exc:
            raise RenderUnavailableError(f"the browser failed to render: {exc}") from exc
        finally:
            self._duration.labels(fmt).observe(time.perf_counter() - began)
