"""Scheduled imports end to end: the spec's ``imports:`` run by the scheduler at their fire
time on the tenant's clock, from a bucket (``gcp-storage-emulator`` through the official
client) into windows (real Redis, Tansu for dead letters, DuckDB). An unchanged source is
skipped, a changed object is imported without counting anything twice, a failed run is
retried with the import's own backoff, and one stopped by its error budget is not retried.

The scheduler's clock is a variable, so fire times pass without waiting for them; the
imports run for real in the scheduler's worker threads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.config.settings import Settings
from riffle.dataflows.import_jobs import ImportJobs, import_jobs, import_run_id
from riffle.dataflows.scheduler import Scheduler
from riffle.sinks.redis.imports import ImportRun, ImportRunStore
from riffle.sinks.redis.schedule import Run, ScheduleStore
from riffle.sinks.warehouse.engines import open_warehouse
from tests.integration.imports_support import BUCKET, gcs, upload  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("gcs")]

ZONE = "Europe/Berlin"
TENANT = "acme"
DAY = 86_400.0
NINE = datetime(2026, 12, 4, 9, 0, tzinfo=ZoneInfo(ZONE)).timestamp()
"""09:00 in Berlin (08:00 UTC): the fire time of ``0 9 * * *`` on the tenant's clock."""
MAPPING = """\
type: purchase
event_id: order_id
ts: {column: created_at, format: "%Y-%m-%d %H:%M:%S", zone: Europe/Berlin}
props:
  amount: {column: total, type: float}
  currency: currency
context:
  country: country
"""
IMPORT = """
tenants:
  acme: {{time_zone: {zone}}}
imports:
  - name: orders
    source: gs://{bucket}/{prefix}/
    mapping: orders.mapping.yaml
    tenant: acme
    schedule: "0 9 * * *"
    max_attempts: 3
    backoff: 1m
{extra}"""


class World:
    """A spec with one scheduled import of a bucket prefix, and a scheduler over it."""

    def __init__(self, settings_factory: Callable[..., Settings], tmp: Path, extra: str = ""):
        self.prefix = f"orders-{uuid.uuid4().hex[:8]}"
        (tmp / "orders.mapping.yaml").write_text(MAPPING)
        spec = tmp / "spec.yaml"
        imports = IMPORT.format(zone=ZONE, bucket=BUCKET, prefix=self.prefix, extra=extra)
        spec.write_text(Path("config/demo.yaml").read_text() + imports)
        self.settings = settings_factory(spec=spec, import_state_dir=tmp / "state")
        client = redis.Redis.from_url(self.settings.redis_url)
        self.store = ScheduleStore(client, self.settings.redis_prefix)
        self.imports = ImportRunStore(client, self.settings.redis_prefix)
        self.kind: ImportJobs = import_jobs(self.settings, CollectorRegistry())
        self.now = NINE - 30
        self.scheduler = Scheduler(
            {"import": self.kind},
            self.store,
            clock=lambda: self.now,
            registry=CollectorRegistry(),
        )
        assert self.scheduler.start(wait_s=5)
        self.scheduler.step()  # the job is seen: it is due from now on

    def at(self, moment: float) -> Run:
        """Move the clock to ``moment``, step, and wait until the newest run of the import
        has finished its attempt; returns it."""
        self.now = moment
        self.scheduler.step()
        deadline = time.monotonic() + 120
        while True:
            runs = self.store.runs("import:orders")
            if self.scheduler.idle() and runs and runs[0].status not in ("queued", "running"):
                return runs[0]
            assert time.monotonic() < deadline, runs
            time.sleep(0.1)

    def revenue(self) -> tuple[int, float]:
        """Windows and summed revenue of the tenant in the warehouse."""
        warehouse = open_warehouse(self.settings)
        points = [p for _dims, ps in warehouse.read_series(TENANT, "revenue", 0, 2**62) for p in ps]
        return len(points), sum(p.sum for p in points)


def orders_csv(first: int, count: int) -> tuple[bytes, float]:
    """``count`` orders from ``o-{first}`` on, minutes apart on 2026-01-05, and their total."""
    lines = ["order_id,created_at,country,total,currency"]
    total = 0.0
    for i in range(first, first + count):
        amount = round(5 + (i * 7.3) % 90, 2)
        total += amount
        minute = f"{10 + i // 60:02d}:{i % 60:02d}"
        lines.append(f"o-{i},2026-01-05 {minute}:12,{'DE' if i % 3 else 'FR'},{amount},EUR")
    return ("\n".join(lines) + "\n").encode(), total


@pytest.fixture
def world(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[World]:
    made = World(settings_factory, tmp_path)
    yield made
    made.scheduler.close()


def test_a_scheduled_bucket_import_runs_at_its_time_skips_unchanged_and_takes_changes(
    world: World,
) -> None:
    first, first_total = orders_csv(0, 40)
    upload(f"{world.prefix}/day-1.csv", first)
    assert world.store.runs("import:orders") == []
    world.now = NINE - 5  # five seconds before 09:00 in Berlin: nothing runs
    world.scheduler.step()
    time.sleep(0.2)
    assert world.store.runs("import:orders") == [] and world.scheduler.idle()

    run = world.at(NINE + 5)
    assert (run.status, run.attempts, run.trigger, run.tenant) == (
        "succeeded",
        1,
        "schedule",
        TENANT,
    )
    assert run.due == int(NINE * 1000)
    assert run.details["status"] == "succeeded"
    assert (run.details["rows_read"], run.details["accepted"]) == (40, 40)
    record = world.imports.get(TENANT, run.details["import_run"])
    assert record is not None and record.id == import_run_id(run.id)
    assert (record.status, record.trigger, record.schedule_run, record.requested_by) == (
        "succeeded",
        "schedule",
        run.id,
        "schedule:orders",
    )
    windows, total = world.revenue()
    assert windows > 0 and total == pytest.approx(first_total)

    unchanged = world.at(NINE + DAY + 5)  # the next day: the bucket is as it was
    assert unchanged.status == "succeeded" and unchanged.details["status"] == "unchanged"
    assert unchanged.details["rows_read"] == 0
    assert world.revenue() == (windows, pytest.approx(first_total))

    second, second_total = orders_csv(40, 25)
    upload(f"{world.prefix}/day-1.csv", first + second.split(b"\n", 1)[1])  # a new generation
    upload(f"{world.prefix}/day-2.csv", orders_csv(65, 10)[0])
    changed = world.at(NINE + 4 * DAY + 5)  # after three fire times with no scheduler step
    assert (changed.status, changed.missed, changed.details["status"]) == (
        "succeeded",
        2,
        "succeeded",
    )
    assert changed.details["rows_read"] == 75  # both files, the first one whole again
    _, total = world.revenue()
    assert total == pytest.approx(first_total + second_total + orders_csv(65, 10)[1])

    listed = world.imports.recent(TENANT, 10)
    assert [(r.status, r.trigger) for r in listed] == [
        ("succeeded", "schedule"),
        ("unchanged", "schedule"),
        ("succeeded", "schedule"),
    ]
    assert world.kind.metrics.runs.labels("unchanged")._value.get() == 1
    assert world.kind.metrics.rows.labels("accepted")._value.get() == 115


def test_the_api_lists_scheduled_runs_with_their_trigger(world: World) -> None:
    from riffle.api.app import create_app
    from tests.api_support import keyed_client

    upload(f"{world.prefix}/day-1.csv", orders_csv(0, 5)[0])
    run = world.at(NINE + 5)
    app = create_app(world.settings, CollectorRegistry())
    admin = keyed_client(app, TENANT, ["admin"])
    [listed] = admin.get("/v1/imports").json()["imports"]
    assert (listed["id"], listed["trigger"], listed["schedule_run"]) == (
        run.details["import_run"],
        "schedule",
        "import:orders@" + str(int(NINE * 1000)),
    )
    assert (listed["status"], listed["rows_read"], listed["accepted"]) == ("succeeded", 5, 5)
    # A run Ctrl-C stopped is listed too (it resumes when started again).
    world.imports.save(ImportRun(id="stopped", tenant=TENANT, source="x", status="interrupted"))
    statuses = [r["status"] for r in admin.get("/v1/imports").json()["imports"]]
    assert sorted(statuses) == ["interrupted", "succeeded"]


def test_a_failed_import_is_retried_with_its_own_backoff_into_the_same_record(
    world: World,
) -> None:
    run = world.at(NINE + 5)  # nothing in the bucket yet: the export is late
    assert (run.status, run.attempts) == ("retrying", 1)
    assert run.error is not None and "no files found" in run.error
    assert run.not_before == int((NINE + 5) * 1000) + 60_000  # the import's backoff: 1m
    record = world.imports.get(TENANT, import_run_id(run.id))
    assert (
        record is not None and record.status == "failed" and "no files found" in str(record.error)
    )

    data, total = orders_csv(0, 12)
    upload(f"{world.prefix}/late.csv", data)
    early = world.at(NINE + 35)  # not before the backoff
    assert (early.status, early.attempts) == ("retrying", 1)
    retried = world.at(NINE + 66)
    assert (retried.id, retried.status, retried.attempts) == (run.id, "succeeded", 2)
    assert retried.details["import_run"] == record.id
    again = world.imports.get(TENANT, record.id)
    assert again is not None and (again.status, again.rows_read, again.error) == (
        "succeeded",
        12,
        None,
    )
    assert again.created_at == record.created_at
    assert [r.id for r in world.imports.recent(TENANT, 10)] == [record.id]
    assert world.revenue()[1] == pytest.approx(total)


def test_an_import_stopped_by_its_error_budget_is_not_retried(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    world = World(settings_factory, tmp_path, extra="    max_errors: 2\n")
    try:
        junk = b"order_id,created_at,country,total,currency\n" + b"x,never,DE,oops,EUR\n" * 20
        upload(f"{world.prefix}/junk.csv", junk)
        run = world.at(NINE + 5)
        assert (run.status, run.attempts, run.details["status"]) == ("failed", 1, "aborted")
        assert run.error is not None and "aborted" in run.error
        assert world.store.queued() == []
    finally:
        world.scheduler.close()
