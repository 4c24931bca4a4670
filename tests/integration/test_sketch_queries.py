"""Sketched metrics through the stores and the query API, on both warehouse engines.

Minute windows of a distinct-count and a quantile metric are all in the
warehouse, the newer half also in Redis (as the flow leaves them), with the hot
horizon covering the hour so both stores answer part of it; hourly rollups, ``group_by``
and the series API must equal the exact answer over the raw values within the
sketches' error — a union of sketches, never a sum of distinct counts.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.spec import parse_spec
from riffle.operators.records import WindowResult
from riffle.operators.sketches import Sketch, sketch_for
from riffle.sinks.redis.windows import RedisWindowStore
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.warehouse_fixtures import WarehouseTarget

pytestmark = pytest.mark.integration

MIN, HOUR = 60_000, 3_600_000
SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: context.country}}
metrics:
  - {name: visitors, events: [view], aggregation: distinct, value: context.user_id,
     dimensions: [country], window: 1m}
  - {name: latency, events: [view], aggregation: quantiles, value: props.ms,
     quantiles: [0.5, 0.9], window: 1m}
"""


def test_rollups_and_groups_merge_sketches(
    warehouse_target: WarehouseTarget, redis_url: RedisTarget, tmp_path: Path
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    spec = parse_spec(SPEC)
    prefix = f"{redis_url.prefix}-{uuid.uuid4().hex[:8]}"
    settings = warehouse_target.settings(
        redis_url=redis_url.url,
        redis_prefix=prefix,
        spec=spec_path,
        default_tenant="t",
        hot_horizon_seconds=3 * 3600,
        kafka_bootstrap="127.0.0.1:1",
    )
    now = int(time.time() * 1000)
    hour = now - now % HOUR - HOUR  # the last full hour: 30 min cold, 30 min hot
    rng = random.Random(5)
    users = {c: [f"{c}-{rng.randrange(3000)}" for _ in range(6000)] for c in ("de", "fr")}
    latencies = [rng.lognormvariate(4, 1) for _ in range(12000)]
    windows: list[WindowResult] = []
    visitors = sketch_for(spec.metrics[0])
    quantiles = sketch_for(spec.metrics[1])
    assert visitors is not None and quantiles is not None
    for minute in range(60):
        start = hour + minute * MIN
        for country, ids in users.items():
            sketch = Sketch(visitors)
            chunk = ids[minute * 100 : (minute + 1) * 100]
            for user in chunk:
                sketch.update(user)
            windows.append(_window("visitors", (("country", country),), start, len(chunk), sketch))
        sketch = Sketch(quantiles)
        for value in latencies[minute * 200 : (minute + 1) * 200]:
            sketch.update(value)
        windows.append(_window("latency", (), start, 200, sketch))
    boundary = hour + 30 * MIN
    cold = warehouse_target.open()
    cold.init()
    cold.upsert_windows(windows)
    RedisWindowStore(redis.Redis.from_url(redis_url.url), prefix, 86_400).write(
        [w for w in windows if w.window_start >= boundary]
    )
    http = keyed_client(create_app(settings, CollectorRegistry()), "t")
    params = {"start": str(hour), "end": str(hour + HOUR), "step": "1h"}

    exact = len(set(users["de"]) | set(users["fr"]))
    body = http.get("/v1/metrics/visitors/query", params=params).json()
    (group,) = body["groups"]
    (point,) = group["points"]
    assert abs(point["value"] - exact) / exact < 0.05  # a union, not a sum of minutes
    assert point["value"] < 0.5 * sum(len(ids) for ids in users.values())

    by_country = http.get("/v1/metrics/visitors/query", params={**params, "by": "country"}).json()
    for group in by_country["groups"]:
        truth = len(set(users[group["dims"]["country"]]))
        assert abs(group["points"][0]["value"] - truth) / truth < 0.05

    latency = http.get("/v1/metrics/latency/query", params=params).json()
    detail = latency["groups"][0]["points"][0]["detail"]
    ordered = sorted(latencies)
    for name, q in (("p50", 0.5), ("p90", 0.9)):
        rank = sum(1 for v in ordered if v <= detail[name]) / len(ordered)
        assert abs(rank - q) < 0.03, (name, rank)

    # The series API merges sketches across series too (group_by over every country).
    series = http.get(
        "/v1/metrics/visitors/series",
        params={"start": str(hour + 45 * MIN), "end": str(hour + 46 * MIN), "group_by": ""},
    ).json()
    (merged,) = series["series"][0]["points"]
    minute_users = set(users["de"][4500:4600]) | set(users["fr"][4500:4600])
    assert abs(merged["value"] - len(minute_users)) / len(minute_users) < 0.05
    assert merged["detail"]["lower"] <= merged["value"] <= merged["detail"]["upper"]


def _window(
    metric: str, dims: tuple[tuple[str, str], ...], start: int, count: int, sketch: Sketch
) -> WindowResult:
    return WindowResult(
        tenant="t",
        metric=metric,
        dims=dims,
        window_start=start,
        window_end=start + MIN,
        count=count,
        sum=0.0,
        min=None,
        max=None,
        value=sketch.value(),
        is_final=True,
        revision=1,
        sketch=sketch.to_bytes(),
        detail=sketch.detail(),
    )
