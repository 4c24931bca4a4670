"""Calendar windows in the stream (``window: {kind: calendar, unit: day|hour}``).

Events around the European and American fall-back and spring-forward days
for tenants in Berlin, New York, Kolkata (+05:30) and UTC go through the
whole flow; every final window must be exactly one local day (or hour) of
its tenant — start and end from a zoneinfo reference, 23 h and 25 h days
included — with the events of that local day in it, in every worker layout.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from prometheus_client import CollectorRegistry

from riffle.config.errors import SpecError
from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sources.kafka import PartitionPoll
from riffle.stack import free_port

SPEC = parse_spec("""
event_types: {view: {}}
time_zone: UTC
tenants:
  berlin: {time_zone: Europe/Berlin}
  nyc: {time_zone: America/New_York}
  delhi: {time_zone: Asia/Kolkata}
metrics:
  - {name: daily, events: [view], aggregation: count, window: {kind: calendar, unit: day}}
  - {name: hourly, events: [view], aggregation: count, window: {kind: calendar, unit: hour}}
""")
ZONES = {"berlin": "Europe/Berlin", "nyc": "America/New_York", "delhi": "Asia/Kolkata"}
TENANTS = ["berlin", "nyc", "delhi", "utc"]
Key = tuple[str, str, int]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def local_window(zone: str, ts: int, unit: str) -> tuple[int, int]:
    """Reference: the local day (or hour) holding ``ts``, as UTC ms, by zoneinfo alone."""
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(ts / 1000, UTC).astimezone(tz)
    if unit == "day":
        day = local.date()
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        after = day + timedelta(days=1)
        end = datetime(after.year, after.month, after.day, tzinfo=tz)
        return _ms(start), _ms(end)
    hour = local.replace(minute=0, second=0, microsecond=0, fold=0)
    begin = _ms(hour)
    end = begin + 3_600_000
    while datetime.fromtimestamp(end / 1000, UTC).astimezone(tz).hour == local.hour:
        end += 3_600_000  # a repeated hour: one window of two hours
    return begin, end


def events(seed: int) -> list[tuple[str, int]]:
    """``(tenant, ts)`` in time order over 2026-10-24 .. 2026-11-02 (both fall-backs)."""
    rng = random.Random(seed)
    t, end = _ms(datetime(2026, 10, 24, tzinfo=UTC)), _ms(datetime(2026, 11, 2, 12, tzinfo=UTC))
    out = []
    while t < end:
        t += rng.randint(1, 40) * 60_000
        out.append((rng.choice(TENANTS), t))
    return out


def run(evs: list[tuple[str, int]], mode: str) -> list[WindowResult]:
    messages = [
        (orjson.dumps({"event_id": str(i), "type": "view", "ts": ts, "props": {}}), tenant, i)
        for i, (tenant, ts) in enumerate(evs)
    ]
    polls = [
        ("p0", PartitionPoll("p0", messages[i : i + 50], at_end=False))
        for i in range(0, len(messages), 50)
    ]
    out: list[WindowResult] = []
    dead: list[DeadLetter] = []
    flow = build_flow(
        SPEC,
        Settings(lateness_seconds=10, buckets=4, default_tenant="utc"),
        source=TestingSource(polls),
        partitions=["p0"],
        outputs=FlowOutputs(TestingSink(out), None, TestingSink(dead)),
        telemetry=FlowTelemetry(CollectorRegistry()),
    )
    if mode == "single":
        run_main(flow)
    elif mode == "cluster_of_one":
        cluster_main(flow, [f"127.0.0.1:{free_port()}"], 0)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert not dead
    return out


@pytest.mark.parametrize("mode", ["single", "cluster_of_one", "two_workers"])
def test_calendar_windows_are_the_tenants_local_days_and_hours(mode: str) -> None:
    evs = events(seed=5)
    finals = [w for w in run(evs, mode) if w.is_final]
    got = {(w.tenant, w.metric, w.window_start): (w.window_end, w.count) for w in finals}
    assert len(got) == len(finals), "one final per window"
    counts: Counter[tuple[str, str, int, int]] = Counter()
    for tenant, ts in evs:
        for metric, unit in (("daily", "day"), ("hourly", "hour")):
            counts[(tenant, metric, *local_window(ZONES.get(tenant, "UTC"), ts, unit))] += 1
    assert got == {(t, m, s): (e, n) for (t, m, s, e), n in counts.items()}
    lengths = {e - s for (t, m, s), (e, _) in got.items() if m == "daily" and t == "berlin"}
    assert {23, 24, 25} & {length // 3_600_000 for length in lengths} >= {24, 25}


def test_calendar_windows_refuse_models_and_alerts() -> None:
    with pytest.raises(SpecError, match="calendar windows take no anomaly"):
        parse_spec("""
event_types: {view: {}}
metrics:
  - {name: d, events: [view], aggregation: count, window: {kind: calendar, unit: day},
     anomaly: {}}
""")
    with pytest.raises(SpecError, match="needs unit"):
        parse_spec("""
event_types: {view: {}}
metrics: [{name: d, events: [view], aggregation: count, window: {kind: calendar}}]
""")
