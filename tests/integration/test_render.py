"""The process's one Chromium: started by the first render, shared by the next ones (also
at once), started again after it died."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from riffle.api.render import Renderer, chromium_path

pytestmark = pytest.mark.integration

if chromium_path() is None:
    pytest.skip("needs chromium (apt-get install chromium)", allow_module_level=True)

PAGE = "<!doctype html><html><body><h1>Report {n}</h1></body></html>"


def descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def chromiums() -> list[int]:
    out = []
    for pid in descendants(os.getpid()):
        try:
            if "chrom" in Path(f"/proc/{pid}/comm").read_text():
                out.append(pid)
        except OSError:
            continue
    return out


def test_one_browser_serves_every_render_and_comes_back_after_dying() -> None:
    registry = CollectorRegistry()
    renderer = Renderer(registry)
    starts = lambda: registry.get_sample_value("riffle_render_browser_starts_total")  # noqa: E731
    try:
        assert renderer.html_pdf(PAGE.format(n=1)).startswith(b"%PDF")
        with ThreadPoolExecutor(3) as pool:
            pdfs = list(pool.map(lambda n: renderer.html_pdf(PAGE.format(n=n)), range(2, 5)))
        assert all(p.startswith(b"%PDF") for p in pdfs)
        assert starts() == 1
        renders = registry.get_sample_value(
            "riffle_render_duration_seconds_count", {"format": "report_pdf"}
        )
        assert renders == 4
        victims = chromiums()
        assert victims, "no chromium below this process"
        for pid in victims:  # the browser this test started dies (its helpers may go first)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while renderer.browser.started() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert renderer.html_pdf(PAGE.format(n=5)).startswith(b"%PDF")
        assert starts() == 2
    finally:
        renderer.close()
    assert chromiums() == []
