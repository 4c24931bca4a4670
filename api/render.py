"""Server-side rendering with headless Chromium: panels, dashboards and reports.

The page itself draws the chart (the same ECharts code a browser runs), so
an export looks exactly like the panel on screen: PNG is a screenshot of the
panel, SVG is ECharts' own SVG of it (``renderToSVGString``), the PDF is
Chromium's print of the whole dashboard with vector (SVG) charts. Chromium
loads the page as a share link made for the render and revoked after it
(:mod:`api.routes.export`). Reports are HTML printed to PDF the same way
(:meth:`Renderer.html_pdf`).

One :class:`Browser` per process: Chromium starts on the first render, each
render gets a fresh browser context (its own page, cookies and storage) and
closes it, and a browser that died (crashed, killed) is started again on the
next render. Playwright's async API runs on one thread of the browser's own,
so renders from any thread may overlap. Renders are timed in
``riffle_render_duration_seconds{format}``, browser starts counted in
``riffle_render_browser_starts_total``.

Needs Debian's ``chromium`` (or ``RIFFLE_CHROMIUM``) and the ``playwright``
package; without them a render raises :class:`RenderUnavailableError` (``503``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from riffle.config.errors import RiffleError

log = structlog.get_logger(__name__)

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
RENDER_TIMEOUT_S = 60.0
"""Longest one render may take, browser start included."""

Work = Callable[[Any], Awaitable[bytes]]
"""What to do with the loaded page (a Playwright async ``Page``): the bytes to return."""


class RenderUnavailableError(RiffleError):
    """No browser to render with (Chromium or playwright missing), or it failed."""


def chromium_path() -> str | None:
    """The Chromium binary: ``RIFFLE_CHROMIUM``, else ``chromium`` on the PATH."""
    return (
        os.environ.get("RIFFLE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


class Browser:
    """One Chromium for the process, started lazily, restarted when it died."""

    def __init__(self, starts: Counter | None = None) -> None:
        self._starts = starts
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: Any = None
        self._browser: Any = None
        self._launching: asyncio.Lock | None = None

    def render(
        self, open_page: Callable[[Any], Awaitable[None]], viewport: dict[str, int], work: Work
    ) -> bytes:
        """Open a fresh page of ``viewport``, let ``open_page`` load it, return ``work(page)``.

        Raises :class:`RenderUnavailableError` when there is no browser or it failed.
        """
        future: Future[bytes] = asyncio.run_coroutine_threadsafe(
            self._render(open_page, viewport, work), self._running_loop()
        )
        try:
            return future.result(timeout=RENDER_TIMEOUT_S)
        except TimeoutError as exc:
            future.cancel()
            raise RenderUnavailableError(f"the render took over {RENDER_TIMEOUT_S:g} s") from exc

    def started(self) -> bool:
        """Whether a browser is running now."""
        return self._browser is not None and bool(self._browser.is_connected())

    def close(self) -> None:
        """Stop the browser and the thread it runs on."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="riffle-browser", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    async def _render(
        self, open_page: Callable[[Any], Awaitable[None]], viewport: dict[str, int], work: Work
    ) -> bytes:
        from playwright.async_api import Error as PlaywrightError

        for attempt in (1, 2):
            browser = await self._ready()
            try:
                context = await browser.new_context(viewport=viewport)
            except PlaywrightError as exc:  # the browser died since: start another once
                if attempt == 2:
                    raise RenderUnavailableError(f"the browser failed: {exc}") from exc
                await self._forget(browser)
                continue
            try:
                page = await context.new_page()
                await open_page(page)
                return await work(page)
            except PlaywrightError as exc:
                if browser.is_connected() or attempt == 2:
                    raise RenderUnavailableError(f"the browser failed to render: {exc}") from exc
                await self._forget(browser)
            finally:
                try:
                    await context.close()
                except PlaywrightError:
                    log.info("render_context_gone")
        raise RenderUnavailableError("the browser died twice during one render")

    async def _ready(self) -> Any:
        if self._launching is None:
            self._launching = asyncio.Lock()
        async with self._launching:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            binary = chromium_path()
            if binary is None:
                raise RenderUnavailableError("no chromium to render with: apt-get install chromium")
            try:
                from playwright.async_api import Error as PlaywrightError
                from playwright.async_api import async_playwright
            except ImportError as exc:
                raise RenderUnavailableError("the playwright package is not installed") from exc
            if self._browser is not None:
                await self._forget(self._browser)
            try:
                if self._driver is None:
                    self._driver = await async_playwright().start()
                self._browser = await self._driver.chromium.launch(
                    executable_path=binary, args=CHROMIUM_ARGS
                )
            except PlaywrightError as exc:
                raise RenderUnavailableError(f"chromium did not start: {exc}") from exc
            if self._starts is not None:
                self._starts.inc()
            log.info("render_browser_started", binary=binary)
            return self._browser

    async def _forget(self, browser: Any) -> None:
        from playwright.async_api import Error as PlaywrightError

        if self._browser is browser:
            self._browser = None
        try:
            await browser.close()
        except PlaywrightError:
            log.info("render_browser_gone")

    async def _shutdown(self) -> None:
        if self._browser is not None:
            await self._forget(self._browser)
        if self._driver is not None:
            await self._driver.stop()
            self._driver = None


class Renderer:
    """Panels, dashboards (loaded from the API) and HTML (reports) to images and PDF, on one
    shared :class:`Browser`; durations go to ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = Histogram(
            "riffle_render_duration_seconds",
            "Time to render an export or a report (a browser start included when one was due).",
            ["format"],
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32),
            registry=registry,
        )
        starts = Counter(
            "riffle_render_browser_starts",
            "Chromium starts of this process (the first render, and after the browser died).",
            registry=registry,
        )
        self.browser = Browser(starts)

    def panel(
        self, url: str, token: str, fmt: str, height_rows: int, *, theme: str = "light"
    ) -> bytes:
        """One panel (``url`` is ``/ui/shared?panel=…``) as ``png`` or ``svg`` bytes."""
        size = {"width": 1000, "height": max(2, height_rows) * ROW_PX}

        async def work(page: Any) -> bytes:
            if fmt == "svg":
                svg = await page.evaluate("window.riffleSvg()")
                if not svg:
                    raise RenderUnavailableError("the panel drew no chart to export as SVG")
                return str(svg).encode()
            return bytes(await page.locator(".panel").first.screenshot())

        renderer = "svg" if fmt == "svg" else "canvas"
        page_url = f"{url}&renderer={renderer}&theme={theme}#{token}"
        return self._timed(fmt, _goto(page_url), size, work)

    def dashboard_pdf(self, url: str, token: str, *, theme: str = "light") -> bytes:
        """The whole dashboard (``url`` is ``/ui/shared?print=1``) as a landscape A4 PDF."""

        async def work(page: Any) -> bytes:
            await page.emulate_media(media="screen")
            return bytes(
                await page.pdf(format="A4", landscape=True, print_background=True, scale=0.6)
            )

        size = {"width": 1400, "height": 1000}
        return self._timed("pdf", _goto(f"{url}&theme={theme}#{token}"), size, work)

    def html_pdf(self, html: str) -> bytes:
        """A self-contained HTML document (a report) printed to portrait A4, once it has
        loaded and no element carries ``data-charts-pending`` any more."""

        async def open_page(page: Any) -> None:
            await page.set_content(html, wait_until="load")
            await page.wait_for_function(
                "() => !document.querySelector('[data-charts-pending]')", timeout=20_000
            )

        async def work(page: Any) -> bytes:
            return bytes(
                await page.pdf(
                    format="A4",
                    print_background=True,
                    margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"},
                )
            )

        return self._timed("report_pdf", open_page, {"width": 1000, "height": 1400}, work)

    def close(self) -> None:
        """Stop the browser."""
        self.browser.close()

    def _timed(
        self,
        fmt: str,
        open_page: Callable[[Any], Awaitable[None]],
        viewport: dict[str, int],
        work: Work,
    ) -> bytes:
        began = time.perf_counter()
        try:
            return self.browser.render(open_page, viewport, work)
        finally:
            self._duration.labels(fmt).observe(time.perf_counter() - began)


def _goto(url: str) -> Callable[[Any], Awaitable[None]]:
    """Load ``url`` and wait until the page says it has drawn."""

    async def open_page(page: Any) -> None:
        await page.goto(url)
        await page.wait_for_selector("body[data-ready='1']", state="attached", timeout=20_000)
        await page.wait_for_timeout(300)

    return open_page
