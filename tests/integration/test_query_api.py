"""``/top`` and ``/query`` against real Redis and each warehouse engine, checked independently.

Raw events are generated here, folded into minute windows and split between
the stores with an overlap around the hot boundary (older windows in the
warehouse, newer ones in Redis, some in both). Every answer is compared with
a DuckDB query over the raw events themselves — no Riffle code involved.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.api.times import format_instant
from riffle.operators.aggregators import value_of
from riffle.operators.records import WindowResult
from riffle.sinks.redis.windows import RedisWindowStore
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.warehouse_fixtures import WarehouseTarget

pytestmark = pytest.mark.integration

MIN, HOUR = 60_000, 3_600_000
TENANT = "demo"
SPEC = """
version: 1
event_types:
  purchase: {}
dimensions:
  country: {path: context.country}
  device: {path: context.device}
  currency: {path: props.currency}
metrics:
  - name: revenue
    events: [purchase]
    aggregation: sum
    value: props.amount
    dimensions: [country, device, currency]
    window: 1m
"""


class World:
    """Raw events, the app, and an independent DuckDB over the events."""

    def __init__(self, target: WarehouseTarget, redis_url: RedisTarget, tmp_path: Path) -> None:
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        self.prefix = f"{redis_url.prefix}-{uuid.uuid4().hex[:8]}"
        self.settings = target.settings(
            redis_url=redis_url.url,
            redis_prefix=self.prefix,
            spec=spec,
            default_tenant=TENANT,
            hot_horizon_seconds=3600,
            kafka_bootstrap="127.0.0.1:1",
        )
        self.http = keyed_client(create_app(self.settings, CollectorRegistry()), TENANT)
        self.client = redis.Redis.from_url(redis_url.url)
        self.hot = RedisWindowStore(self.client, self.prefix, 2 * 86_400)
        self.cold = target.open()
        self.cold.init()
        now = int(time.time() * 1000)
        self.t0 = now - now % HOUR - 3 * HOUR
        self.last_minute = now - now % MIN - MIN
        rng = random.Random(7)
        self.events = [
            (
                rng.randrange(self.t0, self.last_minute),
                rng.choice(["de", "fr", "us"]),
                rng.choice(["mobile", "desktop"]),
                rng.choice(["eur", "usd"]),
                float(rng.randrange(1, 100)),
            )
            for _ in range(4000)
        ]
        self.db = duckdb.connect()
        self.db.execute(
            "CREATE TABLE events (ts BIGINT, country VARCHAR, device VARCHAR, "
            "currency VARCHAR, amount DOUBLE)"
        )
        self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", self.events)
        windows = self.windows(TENANT, self.events)
        boundary = now - HOUR
        self.cold.upsert_windows([w for w in windows if w.window_start < boundary + 10 * MIN])
        self.hot.write([w for w in windows if w.window_start >= boundary - 10 * MIN])
        # Another tenant's much larger numbers in both stores must never show.
        other = self.windows("other", [(e[0], *e[1:4], 1e6) for e in self.events[:500]])
        self.cold.upsert_windows(other)
        self.hot.write([w for w in other if w.window_start >= boundary])

    @staticmethod
    def windows(tenant: str, events: list[tuple[Any, ...]]) -> list[WindowResult]:
        groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        for ts, country, device, currency, amount in events:
            key = (ts - ts % MIN, country, device, currency)
            groups[key].append(amount)
        return [
            WindowResult(
                tenant=tenant,
                metric="revenue",
                dims=(("country", c), ("currency", cur), ("device", d)),
                window_start=start,
                window_end=start + MIN,
                count=len(v),
                sum=sum(v),
                min=min(v),
                max=max(v),
                value=value_of("sum", len(v), sum(v), min(v), max(v)),
                is_final=True,
                revision=1,
            )
            for (start, c, d, cur), v in groups.items()
        ]

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"/v1/metrics/revenue/{path}", params=params)
        assert response.status_code == 200, response.text
        return response

    def expect(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, list(params)).fetchall()


@pytest.fixture
def world(warehouse_target: WarehouseTarget, redis_url: RedisTarget, tmp_path: Path) -> World:
    return World(warehouse_target, redis_url, tmp_path)


def iso(ms: int) -> str:
    return str(ms)


def test_hourly_breakdown_by_three_dimensions_across_the_boundary(world: World) -> None:
    end = world.last_minute + MIN
    body = world.get(
        "query", start=iso(world.t0), end=iso(end), step="1h", by="country,device,currency"
    ).json()
    got = {
        (g["dims"]["country"], g["dims"]["device"], g["dims"]["currency"], p["start"]): (
            p["count"],
            p["value"],
        )
        for g in body["groups"]
        for p in g["points"]
    }
    rows = world.expect(
        "SELECT country, device, currency, strftime(make_timestamp((ts // 3600000) * 3600000000),"
        " '%Y-%m-%dT%H:%M:%SZ'), count(*), sum(amount) FROM events WHERE ts >= ? AND ts < ? "
        "GROUP BY ALL",
        world.t0,
        end,
    )
    assert got == {(c, d, cur, b): (n, s) for c, d, cur, b, n, s in rows}
    assert body["step_seconds"] == 3600


def test_minute_series_with_filter_equals_raw_events(world: World) -> None:
    start, end = world.t0 + 30 * MIN, world.last_minute + MIN
    body = world.get("query", start=iso(start), end=iso(end), step="1m", country="de").json()
    (group,) = body["groups"]
    got = [(p["start"], p["count"], p["value"], p["min"], p["max"]) for p in group["points"]]
    rows = world.expect(
        "SELECT strftime(make_timestamp((ts // 60000) * 60000000), '%Y-%m-%dT%H:%M:%SZ') b, "
        "count(*), sum(amount), min(amount), max(amount) FROM events "
        "WHERE ts >= ? AND ts < ? AND country = 'de' GROUP BY b ORDER BY b",
        start,
        end,
    )
    assert got == rows


def test_top_with_previous_period(world: World) -> None:
    start, end = world.t0 + 2 * HOUR, world.t0 + 3 * HOUR
    body = world.get(
        "top", by="device", start=iso(start), end=iso(end), limit=1,
        compare="previous_period", currency="eur",
    ).json()  # fmt: skip
    rows = world.expect(
        "SELECT device, sum(amount) FILTER (WHERE ts >= ?), sum(amount) FILTER (WHERE ts < ?) "
        "FROM events WHERE ts >= ? AND ts < ? AND currency = 'eur' GROUP BY 1 ORDER BY 2 DESC",
        start,
        start,
        start - HOUR,
        end,
    )
    device, now_value, before = rows[0]
    assert body["items"] == [
        {
            "device": device,
            "value": now_value,
            "count": body["items"][0]["count"],
            "sum": now_value,
            "min": body["items"][0]["min"],
            "max": body["items"][0]["max"],
            "windows": body["items"][0]["windows"],
            "partial": False,
            "previous": before,
            "delta": now_value - before,
        }
    ]


def test_cache_hit_then_invalidated_by_a_newer_window(world: World) -> None:
    params = {"start": iso(world.t0), "end": iso(world.last_minute + 2 * MIN), "step": "1h"}
    first = world.get("query", **params)
    assert first.headers["X-Riffle-Cache"] == "miss"
    again = world.get("query", **params)
    assert again.headers["X-Riffle-Cache"] == "hit"
    assert again.json() == first.json()
    newer = World.windows(TENANT, [(world.last_minute + 1, "de", "mobile", "eur", 1000.0)])
    world.hot.write(newer)
    fresh = world.get("query", **params)
    assert fresh.headers["X-Riffle-Cache"] == "miss"
    total = sum(p["sum"] for g in fresh.json()["groups"] for p in g["points"])
    assert total == sum(p["sum"] for g in first.json()["groups"] for p in g["points"]) + 1000.0
    assert world.get("query", **params).headers["X-Riffle-Cache"] == "hit"


def test_partial_writes_of_the_open_window_invalidate_what_covers_it(world: World) -> None:
    open_start = world.last_minute + MIN
    live = {"start": iso(world.t0), "end": iso(open_start + MIN), "step": "1m"}
    old = {"start": iso(world.t0), "end": iso(world.t0 + HOUR), "step": "1h"}

    def write_open(amount: float, final: bool, revision: int) -> None:
        (w,) = World.windows(TENANT, [(open_start + 1, "de", "mobile", "eur", amount)])
        world.hot.write([dataclasses.replace(w, is_final=final, revision=revision)])

    def open_point(response: Any) -> tuple[float, bool]:
        start = format_instant(open_start)
        (point,) = [
            p for g in response.json()["groups"] for p in g["points"] if p["start"] == start
        ]
        return point["sum"], point["partial"]

    write_open(5.0, final=False, revision=1)
    assert open_point(world.get("query", **live)) == (5.0, True)
    assert world.get("query", **live).headers["X-Riffle-Cache"] == "hit"
    history = world.get("query", **old).json()
    write_open(12.0, final=False, revision=2)  # the same window grows: "updated" does not move
    grown = world.get("query", **live)
    assert grown.headers["X-Riffle-Cache"] == "miss"
    assert open_point(grown) == (12.0, True)
    assert world.get("query", **live).headers["X-Riffle-Cache"] == "hit"
    write_open(20.0, final=True, revision=3)
    assert open_point(world.get("query", **live)) == (20.0, False)
    # A range that ends before the open windows is not touched by their writes.
    cached = world.get("query", **old)
    assert cached.headers["X-Riffle-Cache"] == "hit" and cached.json() == history


def test_other_tenants_never_show(world: World) -> None:
    body = world.get("top", by="country", start=iso(world.t0), limit=10).json()
    total = sum(item["sum"] for item in body["items"])
    assert total == world.expect("SELECT sum(amount) FROM events")[0][0]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"path": "query", "by": "country,device,currency,country2"}, "too_many_dimensions"),
        ({"path": "query", "by": "planet"}, "unknown_dimension"),
        ({"path": "query", "step": "1w"}, "invalid_step"),
        ({"path": "query", "step": "1m", "start": "-30d"}, "range_too_large"),
        ({"path": "query", "start": "-500d", "step": "1d"}, "range_too_large"),
        ({"path": "query", "compare": "yesterday"}, "invalid_compare"),
        ({"path": "top", "by": "country", "limit": "0"}, "invalid_limit"),
        ({"path": "top", "by": "country", "limit": "101"}, "invalid_limit"),
        ({"path": "top", "by": "country,device"}, "invalid_by"),
        ({"path": "query", "start": "soon"}, "invalid_time"),
    ],
)
def test_caps_and_bad_parameters_are_clear_400s(
    redis_url: RedisTarget, tmp_path: Path, params: dict[str, str], code: str
) -> None:
    """Refused before any store is read: one engine is enough."""
    world = World(WarehouseTarget("duckdb", f"duckdb:///{tmp_path / 'w.duckdb'}", None),
                  redis_url, tmp_path)  # fmt: skip
    path = params.pop("path")
    response = world.http.get(f"/v1/metrics/revenue/{path}", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
