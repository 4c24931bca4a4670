"""``/docs`` works without internet: the page and everything it loads come from the API."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from riffle.config.settings import Settings
from tests.integration.ingest_support import serve

pytestmark = pytest.mark.integration


class _Links(HTMLParser):
    """Every URL the page would fetch: scripts, stylesheets, icons, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href") and tag in ("script", "link", "img", "iframe"):
                self.urls.append(value)


def test_docs_page_loads_only_from_the_api(settings_factory: Callable[..., Settings]) -> None:
    with serve(settings_factory()) as served:
        page = httpx.get(f"{served.url}/docs", timeout=10)
        assert page.status_code == 200
        found = _Links()
        found.feed(page.text)
        assert len(found.urls) >= 3, page.text  # the bundle, the stylesheet, the icon
        for url in found.urls:
            absolute = urljoin(f"{served.url}/docs", url)
            assert urlsplit(absolute).netloc == urlsplit(served.url).netloc, url
            asset = httpx.get(absolute, timeout=10)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
        assert "url: '/openapi.json'" in page.text
        assert '"validatorUrl": null' in page.text  # Swagger UI would call its validator
        assert httpx.get(f"{served.url}/redoc", timeout=10).status_code == 404  # ReDoc is a CDN
        assert httpx.get(f"{served.url}/openapi.json", timeout=10).status_code == 200
