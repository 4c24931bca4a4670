"""Local-time rollups and ratio metrics through the API, on Redis and each warehouse engine.

Windows of raw events around the European fall-back day (25 October 2026, 25
hours in Berlin) are split between the warehouse (older) and Redis (newer),
the split falling inside the repeated hour. Every answer is checked against a
reference computed from the raw events with zoneinfo alone: local date or
hour per event, counted in plain Python.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.api.times import format_instant
from riffle.operators.records import WindowResult
from riffle.sinks.redis.windows import RedisWindowStore
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.warehouse_fixtures import WarehouseTarget

pytestmark = pytest.mark.integration

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
SPEC = """
version: 1
event_types: {purchase: {}, visit: {}}
dimensions: {country: {path: context.country}}
tenants:
  berlin: {time_zone: Europe/Berlin}
  delhi: {time_zone: Asia/Kolkata}
metrics:
  - {name: purchases, events: [purchase], aggregation: count, dimensions: [country], window: 1m}
  - {name: visits, events: [visit], aggregation: count, dimensions: [country], window: 1m}
  - {name: hourly, events: [purchase], aggregation: count, window: 1h}
ratios:
  - {name: conversion, numerator: purchases, denominator: visits, dimensions: [country]}
"""
T0 = int(datetime(2026, 10, 23, 12, tzinfo=UTC).timestamp() * 1000)
T1 = int(datetime(2026, 10, 26, 12, tzinfo=UTC).timestamp() * 1000)
SPLIT = int(datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp() * 1000)  # 02:30 CEST, first pass
Event = tuple[int, str, str]  # ts, type, country


def _windows(tenant: str, events: list[Event]) -> list[WindowResult]:
    groups: Counter[tuple[str, tuple[tuple[str, str], ...], int, int]] = Counter()
    for ts, kind, country in events:
        metric = "purchases" if kind == "purchase" else "visits"
        groups[metric, (("country", country),), ts - ts % MIN, MIN] += 1
        if kind == "purchase":
            groups["hourly", (), ts - ts % HOUR, HOUR] += 1
    return [
        WindowResult(tenant=tenant, metric=metric, dims=dims, window_start=start,
                     window_end=start + size, count=n, sum=float(n), min=1.0, max=1.0,
                     value=float(n), is_final=True, revision=1)
        for (metric, dims, start, size), n in groups.items()
    ]  # fmt: skip


class World:
    def __init__(self, target: WarehouseTarget, redis_url: RedisTarget, tmp_path: Path) -> None:
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        prefix = f"{redis_url.prefix}-{uuid.uuid4().hex[:8]}"
        settings = target.settings(
            redis_url=redis_url.url, redis_prefix=prefix, spec=spec,
            hot_horizon_seconds=400 * 86_400, query_cache_ttl_seconds=0,
            kafka_bootstrap="127.0.0.1:1",
        )  # fmt: skip
        self.app = create_app(settings, CollectorRegistry())
        rng = random.Random(11)
        self.events: list[Event] = [
            (rng.randrange(T0, T1), rng.choice(["purchase", "visit", "visit"]), rng.choice("ab"))
            for _ in range(6000)
        ]
        hot = RedisWindowStore(redis.Redis.from_url(redis_url.url), prefix, 4 * 86_400)
        cold = target.open()
        cold.init()
        for tenant in ("berlin", "delhi"):
            windows = _windows(tenant, self.events)
            cold.upsert_windows([w for w in windows if w.window_start < SPLIT + 20 * MIN])
            hot.write([w for w in windows if w.window_start >= SPLIT])

    def get(self, tenant: str, path: str, **params: Any) -> Any:
        response = keyed_client(self.app, tenant).get(f"/v1/metrics/{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def world(warehouse_target: WarehouseTarget, redis_url: RedisTarget, tmp_path: Path) -> World:
    return World(warehouse_target, redis_url, tmp_path)


def _local_start(zone: ZoneInfo, ts: int, step: int) -> int:
    """Reference: the local midnight (or hour) of ``ts`` back in UTC (first occurrence)."""
    local = datetime.fromtimestamp(ts / 1000, UTC).astimezone(zone)
    floor = local.replace(minute=0, second=0, microsecond=0, fold=0)
    if step == DAY:
        floor = floor.replace(hour=0)
    return int(floor.replace(tzinfo=zone).timestamp() * 1000)


def _reference(
    world: World, zone: str, step: int, kind: str, start: int, end: int
) -> dict[tuple[str, str], int]:
    """Events of ``kind`` per (country, bucket start) whose window starts in the range."""
    tz = ZoneInfo(zone)
    counts: Counter[tuple[str, str]] = Counter()
    for ts, event_kind, country in world.events:
        if event_kind == kind and start <= ts - ts % MIN < end:
            counts[country, format_instant(_local_start(tz, ts, step))] += 1
    return dict(counts)


@pytest.mark.parametrize(
    ("tenant", "zone"), [("berlin", "Europe/Berlin"), ("delhi", "Asia/Kolkata")]
)
def test_local_days_and_hours_across_the_fall_back(world: World, tenant: str, zone: str) -> None:
    for step, size in (("1d", DAY), ("1h", HOUR)):
        start = _local_start(ZoneInfo(zone), T0 + DAY, size)  # a local bucket boundary
        body = world.get(
            tenant, "purchases/query", start=str(start), end=str(T1), step=step, by="country"
        )
        assert body["time_zone"] == zone
        got = {(g["dims"]["country"], p["start"]): p["count"] for g in body["groups"]
               for p in g["points"]}  # fmt: skip
        assert got == _reference(world, zone, size, "purchase", start, T1)
    if zone == "Europe/Berlin":  # the 25-hour day is one bucket
        days = [p["start"] for g in body["groups"] for p in g["points"]]
        assert "2026-10-24T22:00:00Z" in days or body["groups"] == []


def test_a_step_that_cuts_windows_is_refused(world: World) -> None:
    """Delhi's days start at 18:30 UTC, inside the hourly metric's windows."""
    client = keyed_client(world.app, "delhi")
    response = client.get("/v1/metrics/hourly/query", params={"start": str(T0), "step": "1d"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_step"
    berlin = world.get("berlin", "hourly/query", start=str(T0 + DAY), end=str(T1), step="1d")
    total = sum(p["count"] for g in berlin["groups"] for p in g["points"])
    first = _local_start(ZoneInfo("Europe/Berlin"), T0 + DAY, DAY)
    assert total == sum(1 for ts, kind, _ in world.events if kind == "purchase" and first <= ts)


def test_ratio_rollups_are_ratios_of_sums(world: World) -> None:
    start = _local_start(ZoneInfo("Europe/Berlin"), T0 + DAY, DAY)
    body = world.get("berlin", "conversion/query", start=str(start), end=str(T1), step="1d",
                     by="country")  # fmt: skip
    assert body["aggregation"] == "ratio"
    above = _reference(world, "Europe/Berlin", DAY, "purchase", start, T1)
    below = _reference(world, "Europe/Berlin", DAY, "visit", start, T1)
    got = {(g["dims"]["country"], p["start"]): (p["numerator"], p["denominator"], p["value"])
           for g in body["groups"] for p in g["points"]}  # fmt: skip
    assert got == {
        key: (above.get(key, 0), below.get(key, 0), above.get(key, 0) / below[key])
        for key in above.keys() | below.keys()
    }
    top = world.get("berlin", "conversion/top", by="country", start=str(start), end=str(T1))
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (country, _), n in above.items():
        totals[country][0] += n
    for (country, _), n in below.items():
        totals[country][1] += n
    assert {i["country"]: i["value"] for i in top["items"]} == {
        c: a / b for c, (a, b) in totals.items()
    }
    ranked = [i["value"] for i in top["items"]]
    assert ranked == sorted(ranked, reverse=True)


def test_ratios_are_listed_with_the_metrics(world: World) -> None:
    listing = world.get("berlin", "")
    assert [r["name"] for r in listing["ratios"]] == ["conversion"]
    assert listing["ratios"][0]["numerator"] == "purchases"


def test_ratio_series_per_window_and_merged(world: World) -> None:
    start, end = SPLIT - 30 * MIN, SPLIT + 30 * MIN  # across the Redis/warehouse split
    per = world.get("berlin", "conversion/series", start=str(start), end=str(end))
    merged = world.get("berlin", "conversion/series", start=str(start), end=str(end), group_by="")
    assert per["aggregation"] == "ratio"
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for ts, kind, country in world.events:
        if start <= ts < end:
            for key in (
                (country, format_instant(ts - ts % MIN)),
                ("", format_instant(ts - ts % MIN)),
            ):
                counts[key][0 if kind == "purchase" else 1] += 1
    for body, keyed in ((per, True), (merged, False)):
        for series in body["series"]:
            for p in series["points"]:
                n, d = counts[series["dims"]["country"] if keyed else "", p["window_start"]]
                assert p["detail"] == {"numerator": n, "denominator": d}
                assert p["value"] == (n / d if d else None)
                assert p["is_final"]
    (only,) = merged["series"]
    assert {p["window_start"] for p in only["points"]} == {m for c, m in counts if c == ""}
