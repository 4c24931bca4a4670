"""The dashboard page in a real browser (Debian's chromium driven by Playwright) against
the API over real HTTP, Redis and DuckDB, with windows written by the dataflow's own
Redis writer: a chart appears, a partial value changes live (server-sent events, no
refresh), an alert transition from the alert writer becomes a mark, a variable filters,
a panel is added and saved, a share link opens in a fresh context without a key, exports
come out right. Screenshots land in ``tests/e2e/screenshots/`` and are checked not to be
blank."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from riffle.api.render import CHROMIUM_ARGS, chromium_path
from riffle.config.settings import Settings
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.records import WindowResult
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.windows import RedisWindowStore
from tests.integration.ingest_support import Served, serve

pytestmark = pytest.mark.e2e
playwright = pytest.importorskip("playwright.sync_api")
if chromium_path() is None:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

SHOTS = Path(__file__).parent / "screenshots"
SPEC = """
version: 1
event_types:
  page_view: {}
dimensions:
  country: {path: context.country}
metrics:
  - name: views
    unit: views
    events: [page_view]
    aggregation: count
    dimensions: [country]
    window: 1m
"""
BOARD = """
id: views
title: Views
refresh: "off"
time: {start: -30m, end: now}
variables: [{name: country, label: Country}]
panels:
  - id: now
    title: Views this minute
    type: stat
    query: {metric: views}
    layout: {x: 0, y: 0, w: 4, h: 3}
  - id: series
    title: Views by country
    type: timeseries
    query: {metric: views, by: [country]}
    layout: {x: 4, y: 0, w: 8, h: 3}
  - id: top
    title: Top countries
    type: topk
    query: {kind: top, metric: views, by: [country]}
    layout: {x: 0, y: 3, w: 6, h: 3}
"""
MIN = 60_000


def window(country: str, start: int, n: int, final: bool, revision: int) -> WindowResult:
    return WindowResult("demo", "views", (("country", country),), start, start + MIN, n,
                        float(n), None, None, float(n), final, revision)  # fmt: skip


@pytest.fixture
def served(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "spec.yaml").write_text(SPEC)
    boards = tmp_path / "dashboards"
    boards.mkdir()
    (boards / "views.yaml").write_text(BOARD)
    settings = settings_factory(spec=tmp_path / "spec.yaml", dashboards_dir=boards)
    with serve(settings) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shot(page: Any, name: str, tmp_path: Path) -> Path:
    """A full-page screenshot, saved in the test's tmp dir and copied to SHOTS; not blank."""
    from PIL import Image

    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    print(f"screenshot {SHOTS / path.name}")
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000) or []
    assert image.width >= 1000 and len(colours) > 200, (
        f"{name}: looks blank ({len(colours)} colours)"
    )
    return path


def test_dashboard_page_live_edit_share_and_export(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    key = served.key("demo", ["read", "admin"])
    hot = RedisWindowStore(served.app.state.services.hot.client, served.settings.redis_prefix, 3600)
    now = (int(time.time() * 1000) // MIN) * MIN
    hot.write([window(c, now - i * MIN, 10 + i + len(c), True, 1)
               for i in range(1, 20) for c in ("de", "fr")])  # fmt: skip
    hot.write([window("de", now, 3, False, 1)])

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{served.url}/ui/")
    page.fill("#key", key)
    page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-ready='1']")
    big = page.locator("[data-panel=now] .big")
    assert big.inner_text() == "3" and "partial" in (big.get_attribute("class") or "")
    page.wait_for_selector("[data-panel=series] canvas")
    page.wait_for_selector("#live.on")
    shot(page, "dashboard-before", tmp_path)

    hot.write([window("de", now, 7, False, 2), window("fr", now, 2, False, 1)])
    playwright.expect(big).to_have_text("9", timeout=15_000)
    # An alert transition the flow writes becomes a mark on the metric's chart, live.
    RedisAlerts(hot.client, served.settings.redis_prefix).write(
        [AlertTransition("demo", "views_high", "views", "views-de", (("country", "de"),),
                         "warning", "pending", "firing", now, 9.0, now)]
    )  # fmt: skip
    page.wait_for_function(
        "() => JSON.stringify(S.panels.series.chart.getOption().series.map((s) => s.markLine))"
        ".includes('views_high: firing')",
        timeout=15_000,
    )
    shot(page, "dashboard-live", tmp_path)

    page.select_option("#vars select[data-var=country]", "fr")
    playwright.expect(big).to_have_text("2", timeout=15_000)
    hot.write([window("fr", now, 5, True, 2)])
    playwright.expect(big).to_have_text("5", timeout=15_000)
    assert "partial" not in (big.get_attribute("class") or "")

    page.click("#edit")
    page.click("#add")
    page.fill("#panel-form input[name=title]", "Views as bars")
    page.select_option("#panel-form select[name=type]", "bar")
    page.fill("#panel-form input[name=by]", "country")
    page.click("#panel-ok")
    page.wait_for_selector("section.panel:has-text('Views as bars') canvas")
    page.click("#save")
    api = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    saved = api.get("/v1/dashboards/views").json()
    assert saved["version"] == 2
    assert [p["title"] for p in saved["dashboard"]["panels"]][-1] == "Views as bars"
    page.click("#theme")
    shot(page, "dashboard-edited-light", tmp_path)

    page.click("#share")
    page.click("#share-create")
    playwright.expect(page.locator("#share-url")).to_have_value(re.compile("/ui/shared#"))
    link = page.input_value("#share-url")
    assert "rfl_" not in link
    stranger = browser.new_context(viewport={"width": 1280, "height": 800})
    shared = stranger.new_page()
    shared.goto(link)
    shared.wait_for_selector("body[data-ready='1']")
    assert shared.locator("[data-panel=now] .big").inner_text() == "12"  # de 7 + fr 5
    assert shared.locator("#edit").is_hidden()
    shot(shared, "shared-link", tmp_path)
    stranger.close()
    assert not errors, errors

    png = api.get("/v1/dashboards/views/panels/series/export.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    image = Image.open(io.BytesIO(png.content))
    assert image.width == 1000 and image.height >= 200
    svg = api.get("/v1/dashboards/views/panels/series/export.svg")
    assert svg.status_code == 200 and svg.text.startswith("<svg") and "<path" in svg.text
    pdf = api.get("/v1/dashboards/views/export.pdf")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    (tmp_path / "views.pdf").write_bytes(pdf.content)
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", str(tmp_path / "views.pdf"), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for title in ("Views this minute", "Views by country", "Top countries", "Views as bars"):
            assert title in text, f"{title!r} not in the PDF"
    assert api.get("/v1/dashboards/views/shares").json()["shares"][0]["created_by"] != "export"
