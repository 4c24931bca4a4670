"""Scheduled reports end to end: the scheduler runs a report at its fire time on the tenant's
clock, its figures come from the warehouse, Chromium prints the PDF, and it reaches a real
SMTP server (aiosmtpd; the PDF attached, ``pdftotext`` finds the figures) and a real webhook
receiver (signed; figures, link and PDF in the body). A channel that refuses is retried on
the next attempt alone; the one that took it is not sent to twice.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.api.deps import locked_dashboards
from riffle.api.render import Renderer, chromium_path
from riffle.api.reports.jobs import ReportJobs, report_jobs
from riffle.config.settings import Settings
from riffle.dataflows.scheduler import Scheduler
from riffle.operators.records import WindowResult
from riffle.operators.schedule import JobFailedError
from riffle.sinks.channels.webhook import verify
from riffle.sinks.redis.schedule import Run, ScheduleStore, run_id
from riffle.sinks.warehouse.engines import open_warehouse
from tests.conftest import RedisTarget
from tests.integration.notify_support import Inbox, Receiver, smtp_server

pytestmark = pytest.mark.integration

if chromium_path() is None or shutil.which("pdftotext") is None:
    pytest.skip("needs chromium and pdftotext (apt-get install chromium poppler-utils)",
                allow_module_level=True)  # fmt: skip

ZONE = "Europe/Berlin"
TENANT = "shop"
HOUR = 3_600_000
SECRET = "report-hook-secret"
COUNTRIES = {"de": 6, "fr": 4, "us": 1}
"""Page views per hour and country on the report's day; the day before has half as many
(rounded down), and ``us`` none, so the movers and changes are known."""

SPEC = """
version: 1
time_zone: {zone}
event_types: {{page_view: {{}}, purchase: {{}}}}
dimensions: {{country: {{path: context.country}}}}
metrics:
  - {{name: page_views, events: [page_view], aggregation: count, dimensions: [country],
      window: 1h}}
  - {{name: revenue, unit: EUR, events: [purchase], aggregation: sum, value: props.amount,
      window: 1h}}
notifications:
  receivers:
    - name: shop-team
      email: {{host: 127.0.0.1, port: {smtp}, from: riffle@x.test, to: [shop@x.test]}}
      webhook: {{url: "{hook}", secret_env: REPORT_HOOK_SECRET, max_attempts: 2,
                 backoff: 10ms}}
  route: {{receiver: shop-team}}
reports:
  - name: daily-shop
    title: Web shop daily
    tenant: {tenant}
    schedule: "0 8 * * *"
    period: day
    metrics: [page_views, revenue]
    receivers: [shop-team]
"""


def local_midnight(days_ago: int) -> int:
    today = datetime.now(ZoneInfo(ZONE)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = (today - timedelta(days=days_ago)).replace(tzinfo=None)
    return int(day.replace(tzinfo=ZoneInfo(ZONE)).timestamp() * 1000)


def windows(day_start: int, day_end: int, views: dict[str, int], amount: float) -> list[Any]:
    out = []
    for start in range(day_start, day_end, HOUR):
        for country, n in views.items():
            if n:
                dims = (("country", country),)
                out.append(WindowResult(TENANT, "page_views", dims, start, start + HOUR, n,
                                        float(n), None, None, float(n), True, 1))  # fmt: skip
        out.append(WindowResult(TENANT, "revenue", (), start, start + HOUR, 1, amount, amount,
                                amount, amount, True, 1))  # fmt: skip
    return out


class World:
    """A spec with one report, two days of windows in the warehouse, the peers."""

    def __init__(self, redis_url: RedisTarget, tmp_path: Path, inbox_port: int) -> None:
        self.hook = Receiver().start()
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            SPEC.format(zone=ZONE, smtp=inbox_port, hook=self.hook.url("/reports"), tenant=TENANT)
        )
        self.settings = Settings(
            redis_url=redis_url.url,
            redis_prefix=f"{redis_url.prefix}-{time.monotonic_ns()}",
            warehouse=f"duckdb:///{tmp_path / 'w.duckdb'}",
            spec=spec,
            hot_horizon_seconds=60,
            public_url="http://riffle.test",
        )
        self.day = (local_midnight(3), local_midnight(2))
        self.before = (local_midnight(4), local_midnight(3))
        warehouse = open_warehouse(self.settings)
        warehouse.init()
        warehouse.upsert_windows(windows(*self.day, COUNTRIES, 10.0))
        halves = {c: n // 2 for c, n in COUNTRIES.items()}
        warehouse.upsert_windows(windows(*self.before, halves, 5.0))
        self.hours = (self.day[1] - self.day[0]) // HOUR
        self.before_hours = (self.before[1] - self.before[0]) // HOUR

    def jobs(self, renderer: Renderer) -> ReportJobs:
        return report_jobs(self.settings, CollectorRegistry(), renderer)

    def jobs_with_env(self, renderer: Renderer) -> ReportJobs:
        made = self.jobs(renderer)
        made.environ = {"REPORT_HOOK_SECRET": SECRET}
        return made


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    """One browser for every report of the module, as a scheduler process keeps one."""
    shared = Renderer(CollectorRegistry())
    yield shared
    shared.close()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    with smtp_server(box) as port:
        yield box, port


@pytest.fixture
def world(redis_url: RedisTarget, tmp_path: Path, inbox: tuple[Inbox, int]) -> Iterator[World]:
    made = World(redis_url, tmp_path, inbox[1])
    yield made
    made.hook.close()


def pdf_of(message: Message) -> tuple[str, bytes]:
    [part] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return str(part.get_filename()), payload


def pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_a_scheduled_report_reaches_email_and_webhook(
    world: World, inbox: tuple[Inbox, int], renderer: Renderer, tmp_path: Path
) -> None:
    box, _ = inbox
    jobs = world.jobs_with_env(renderer)
    due = world.day[1] + 8 * HOUR  # 08:00 on the tenant's clock the day after
    store = ScheduleStore(
        redis.Redis.from_url(world.settings.redis_url), world.settings.redis_prefix
    )
    clock = [due / 1000 - 60]
    scheduler = Scheduler(
        {"report": jobs}, store, clock=lambda: clock[0], registry=CollectorRegistry()
    )
    assert scheduler.start(wait_s=5)
    scheduler.step()  # a minute before the fire time: nothing runs
    clock[0] = due / 1000 + 5
    scheduler.step()
    deadline = time.monotonic() + 90
    while not (scheduler.idle() and store.runs("report:daily-shop")
               and store.runs("report:daily-shop")[0].status == "succeeded"):  # fmt: skip
        assert time.monotonic() < deadline, store.runs("report:daily-shop")
        time.sleep(0.1)
    scheduler.close()
    [run] = store.runs("report:daily-shop")
    assert run.details["period"] == {"start": world.day[0], "end": world.day[1]}
    assert {(d["channel"], d["status"], d["attempts"]) for d in run.details["deliveries"]} == {
        ("email", "delivered", 1),
        ("webhook", "delivered", 1),
    }

    views = sum(COUNTRIES.values()) * world.hours
    views_before = sum(n // 2 for n in COUNTRIES.values()) * world.before_hours
    [mail] = box.messages
    assert mail["Subject"] == "Web shop daily"
    assert mail["X-Riffle-Dedup-Key"] == f"{run.id}:shop-team:email"
    assert mail["Message-ID"].startswith("<report-") and mail["Message-ID"].endswith("@riffle>")
    filename, pdf = pdf_of(mail)
    day = datetime.fromtimestamp(world.day[0] / 1000, ZoneInfo(ZONE)).strftime("%Y-%m-%d")
    assert filename == f"daily-shop-{day}.pdf"
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    assert "Web shop daily" in text
    assert "page_views" in text and "revenue" in text
    assert f"{views:,}" in text and f"{views_before:,}" in text
    assert f"{10.0 * world.hours:,.0f}" in text  # revenue
    assert f"{(views - views_before) / views_before * 100:+.1f} %" in text
    assert "top movers by country" in text
    plain = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    assert f"*page_views*: {views:,}" in str(plain.get_payload(decode=True), "utf-8")

    [hit] = world.hook.at("/reports")
    assert verify(SECRET.encode(), hit.timestamp, hit.body, hit.signature)
    assert hit.headers["Idempotency-Key"] == f"{run.id}:shop-team:webhook"
    body = hit.json
    assert (body["kind"], body["report"], body["tenant"]) == ("report", "daily-shop", TENANT)
    assert body["period"] == {"start": world.day[0], "end": world.day[1]}
    figures = {m["name"]: m for m in body["figures"]["metrics"]}
    assert (figures["page_views"]["value"], figures["page_views"]["previous"]) == (
        views,
        views_before,
    )
    assert figures["revenue"]["value"] == 10.0 * world.hours
    movers = figures["page_views"]["movers"]
    assert [m["value"] for m in movers] == ["de", "fr", "us"]  # by the size of the change
    assert movers[2] == {"value": "us", "now": world.hours, "before": None,
                         "change": world.hours}  # fmt: skip
    [attached] = body["attachments"]
    assert attached["content_type"] == "application/pdf"
    assert base64.b64decode(attached["data_base64"]) == pdf
    assert jobs.metrics.deliveries.labels("email", "delivered")._value.get() == 1
    assert scheduler.metrics.runs.labels("report", "succeeded")._value.get() == 1


def test_a_refusing_channel_is_retried_alone(
    world: World, inbox: tuple[Inbox, int], renderer: Renderer
) -> None:
    box, _ = inbox
    jobs = world.jobs_with_env(renderer)
    due = world.day[1] + 8 * HOUR
    run = Run(run_id("report:daily-shop", due), "report", "daily-shop", TENANT, due, attempts=1)
    world.hook.default = 400
    with pytest.raises(JobFailedError, match="not delivered to shop-team/webhook") as caught:
        jobs.run(run)
    details = caught.value.details
    states = {d["channel"]: (d["status"], d["attempts"]) for d in details["deliveries"]}
    assert states == {"email": ("delivered", 1), "webhook": ("dead", 1)}  # 400: not retried
    world.hook.default = 200
    done = jobs.run(run.but(attempts=2, details=details))
    states = {d["channel"]: d["status"] for d in done["deliveries"]}
    assert states == {"email": "delivered", "webhook": "delivered"}
    assert len(box.messages) == 1  # the email was not sent again
    assert [h.code for h in world.hook.at("/reports")] == [400, 200]


def test_a_report_of_a_dashboard_links_to_it_over_its_period(
    world: World, renderer: Renderer, tmp_path: Path
) -> None:
    from riffle.config.dashboards import parse_dashboard

    spec_path = world.settings.spec
    spec_path.write_text(spec_path.read_text().replace(
        "    metrics: [page_views, revenue]\n", "    dashboard: shop-board\n"))  # fmt: skip
    client = redis.Redis.from_url(world.settings.redis_url)
    board = parse_dashboard({
        "id": "shop-board", "title": "Shop",
        "panels": [{"id": "views", "title": "Views", "query": {"metric": "page_views"}}],
    })  # fmt: skip
    dashboards = locked_dashboards(client, world.settings.redis_prefix,
                                   open_warehouse(world.settings))  # fmt: skip
    dashboards.save(TENANT, board, None, "test")
    jobs = world.jobs_with_env(renderer)
    report = jobs.report("daily-shop")
    details: dict[str, Any] = {}
    made = jobs.make(report, world.day, details)
    assert made.link is not None and made.link.startswith("http://riffle.test/ui/shared#rfs_")
    assert details["link"] == made.link
    assert [m.name for m in made.figures.metrics] == ["page_views"]
    assert "Web shop daily" in pdf_text(made.pdf, tmp_path)
    again = jobs.make(report, world.day, details)  # a retry keeps the link it made
    assert again.link == made.link


def test_the_api_lists_a_tenants_reports_and_their_runs(world: World) -> None:
    from fastapi.testclient import TestClient

    from riffle.api.app import create_app
    from tests.api_support import keyed_client

    app = create_app(world.settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"}),
                     CollectorRegistry())  # fmt: skip
    store = ScheduleStore(
        redis.Redis.from_url(world.settings.redis_url), world.settings.redis_prefix
    )
    due = world.day[1] + 8 * HOUR
    details = {"period": {"start": world.day[0], "end": world.day[1]}, "deliveries": [
        {"receiver": "shop-team", "channel": "email", "status": "delivered", "attempts": 1,
         "error": None, "at": due}]}  # fmt: skip
    store.record(Run(run_id("report:daily-shop", due), "report", "daily-shop", TENANT, due,
                     status="succeeded", attempts=1, started_at=due, finished_at=due + 5,
                     details=details))  # fmt: skip
    mine = keyed_client(app, TENANT)
    [listed] = mine.get("/v1/reports").json()["reports"]
    assert (listed["name"], listed["schedule"], listed["time_zone"]) == (
        "daily-shop",
        "0 8 * * *",
        ZONE,
    )
    assert listed["next_run"].endswith("Z") and listed["last_run"]["status"] == "succeeded"
    [run] = mine.get("/v1/reports/daily-shop/runs").json()["runs"]
    assert run["deliveries"][0]["status"] == "delivered" and run["period"] == details["period"]
    assert mine.get("/v1/reports/nope/runs").status_code == 404
    other = keyed_client(app, "other-tenant")
    assert other.get("/v1/reports").json() == {"reports": []}
    assert other.get("/v1/reports/daily-shop/runs").status_code == 404
    assert TestClient(app).get("/v1/reports").status_code == 401


def test_riffle_reports_run_makes_one_now_and_records_it(
    world: World, inbox: tuple[Inbox, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from riffle.cli import app
    from riffle.config.settings import get_settings

    box, _ = inbox
    env = {
        "RIFFLE_SPEC": str(world.settings.spec),
        "RIFFLE_REDIS_URL": world.settings.redis_url,
        "RIFFLE_REDIS_PREFIX": world.settings.redis_prefix,
        "RIFFLE_WAREHOUSE": world.settings.warehouse,
        "RIFFLE_HOT_HORIZON_SECONDS": "60",
        "REPORT_HOOK_SECRET": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    day = datetime.fromtimestamp(world.day[0] / 1000, ZoneInfo(ZONE)).strftime("%Y-%m-%d")

    def riffle(*args: str) -> Any:
        get_settings.cache_clear()  # the command reads this test's environment
        try:
            return CliRunner().invoke(app, list(args))
        finally:
            get_settings.cache_clear()

    bad = riffle("reports", "run", "daily-shop", "--period", "yesterday-ish")
    assert bad.exit_code == 2 and "a period is last" in bad.output
    out = tmp_path / "out"
    made = riffle("reports", "run", "daily-shop", "--period", day, "--out", str(out))
    assert made.exit_code == 0, made.output
    pdf = out / f"daily-shop-{day}.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.with_suffix(".html").is_file()
    assert "shop-team/email: delivered" in made.output
    assert "shop-team/webhook: delivered" in made.output
    assert len(box.messages) == 1 and len(world.hook.at("/reports")) == 1
    listed = riffle("scheduler", "runs", "report:daily-shop")
    assert listed.exit_code == 0, listed.output
    assert "report:daily-shop@manual-" in listed.output
    assert "succeeded attempts=1 trigger=manual" in listed.output
