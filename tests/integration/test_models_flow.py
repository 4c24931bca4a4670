"""The model stage end to end: windows through Bytewax into DuckDB, read back by the API.

Also checks the detector against the demo stream's own anomaly schedule
(``sources.demo.anomalies``): rate spikes and drops are flagged, quiet
windows are not.
"""

from __future__ import annotations

import math
import random
import uuid
from pathlib import Path

import bytewax.operators as op
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.settings import DEMO_SPEC, Settings
from riffle.config.spec import load_spec, parse_spec
from riffle.dataflows.models import ModelStoreSink, ModelTelemetry, model_stage
from riffle.operators.models.series import AnomalyRecord, ShardModels
from riffle.operators.records import WindowResult
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.model_results import ModelStore
from riffle.sources.demo import anomalies, daily_factor
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.integration.stores_support import valued
from tests.warehouse_fixtures import WarehouseTarget

MIN = 60_000
SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - name: views
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 5m
    anomaly: {}
    forecast: {horizon: 4}
  - name: plain
    events: [view]
    aggregation: count
"""


def _windows(n: int) -> list[WindowResult]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        start = i * 5 * MIN
        value = 100 + 40 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3)
        if i == n - 5:
            value *= 4
        out.extend(
            valued("views", (("country", country),), start, 5 * MIN, value)
            for country in ("de", "fr")
        )
    return out


def test_model_stage_writes_scores_and_forecasts_the_api_serves(
    tmp_path: Path, redis_url: RedisTarget, warehouse_target: WarehouseTarget
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    spec = parse_spec(SPEC)
    windows = _windows(700)
    # A replayed window must not be learned twice nor change its row.
    windows.append(windows[-1])
    flow = Dataflow("models_test")
    results = op.input("in", flow, TestingSource(windows, batch_size=50))
    registry = CollectorRegistry()
    model_stage(
        results,
        spec,
        shards=4,
        sink=ModelStoreSink(warehouse_target.settings()),
        telemetry=ModelTelemetry(registry),
    )
    run_main(flow)

    store = ModelStore(warehouse_target.open())
    rows = store.anomalies("t1", 0, 10**13, limit=5000)
    assert len(rows) == 1400
    # The first day is the detector's first sight of the daily range; after it, the spike tops.
    top = max((r for r in rows if r["window_start"] >= 288 * 5 * MIN), key=lambda r: r["score"])
    assert top["window_start"] == 695 * 5 * MIN and top["label"] == "anomaly"
    assert registry.get_sample_value("riffle_models_scored_total", {"detector": "riffle"}) == 1401
    alerts = registry.get_sample_value(
        "riffle_models_alerts_total", {"detector": "riffle", "metric": "views"}
    )
    rate = registry.get_sample_value(
        "riffle_models_alert_rate", {"detector": "riffle", "metric": "views"}
    )
    assert alerts is not None and rate == alerts / 1401
    skill = registry.get_sample_value("riffle_models_forecast_skill", {"metric": "views"})
    assert skill is not None and -1 < skill < 1
    # The sine's level moves through the day: ADWIN sees the inputs drift.
    in_drifts = registry.get_sample_value("riffle_models_input_drift_total", {"metric": "views"})
    assert in_drifts is not None and in_drifts > 0
    # ADWIN watches the errors of both models; the error level gauges are set.
    for model in ("detector", "forecaster"):
        level = registry.get_sample_value(
            "riffle_models_error_level", {"metric": "views", "model": model}
        )
        assert level is not None and 0.0 < level < 1.0
    forecasts = store.latest_forecasts("t1", "views")
    assert len(forecasts) == 2

    settings = warehouse_target.settings(
        spec=spec_path,
        default_tenant="t1",
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-models",
    )
    http = keyed_client(create_app(settings, CollectorRegistry()), "t1")
    body = http.get("/v1/anomalies", params={"start": "0", "label": "anomaly"}).json()
    assert any(r["window_start"] == 695 * 5 * MIN for r in body["anomalies"])
    assert body["anomalies"][0]["dims"]["country"] in ("de", "fr")
    fc = http.get("/v1/forecasts/views").json()["forecasts"][0]
    assert len(fc["points"]) == 4
    assert all(p["low"] <= p["mean"] <= p["high"] for p in fc["points"])
    assert http.get("/v1/forecasts/plain").status_code == 404
    models = http.get("/v1/models").json()
    assert models["configured"][0]["metric"] == "views"
    assert {h["kind"] for h in models["health"]} == {"anomaly", "forecast"}
    [fc_health] = [h for h in models["health"] if h["kind"] == "forecast"]
    assert fc_health["skill"] == 1 - fc_health["mae"] / fc_health["naive_mae"]
    # Drift of errors and of inputs, per metric and model, from model_health.
    monitoring = {(m["metric"], m["model"]): m for m in models["monitoring"]}
    assert set(monitoring) == {("views", "detector"), ("views", "forecaster")}
    assert monitoring[("views", "detector")]["series"] == 2
    assert 0 < monitoring[("views", "detector")]["error_level"] < 1
    assert monitoring[("views", "detector")]["input_drifts"] >= 0
    assert models["predictions"] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_demo_rate_anomalies_are_flagged_and_quiet_windows_are_not(seed: int) -> None:
    # What `make run` shows: the demo spec's page_views_10s, its window and its
    # anomaly block, through the model stage's own per-shard models.
    spec = load_spec(DEMO_SPEC)
    metric = next(m for m in spec.metrics if m.name == "page_views_10s")
    step = metric.window_ms
    shard = ShardModels({metric.name: (step, metric.anomaly, None)})
    rng = random.Random(seed)
    start, days = 1_700_006_400_000, 3
    start -= start % 86_400_000
    end = start + days * 86_400_000
    rate = 0.38 * 200.0  # page views per second: 38 % of the demo's default 200 events/s
    schedule = [a for a in anomalies(seed, start, end) if a.kind in ("spike", "drop")]
    labels: dict[int, str] = {}
    for t in range(start, end, step):
        factor = daily_factor(t + step // 2)
        for a in schedule:
            overlap = max(0, min(a.end_ms, t + step) - max(a.start_ms, t))
            factor *= 1 + (a.factor - 1) * overlap / step
        mean = rate * step / 1000 * factor
        value = float(max(0, round(rng.gauss(mean, math.sqrt(mean)))))
        window = valued(metric.name, (), t, step, value)
        (record,) = shard.apply(window, {})
        assert isinstance(record, AnomalyRecord)
        labels[t] = record.result.label
    warm = start + 86_400_000
    strong = [a for a in schedule if a.start_ms >= warm and a.end_ms - a.start_ms >= 90_000]
    caught = sum(
        any(labels[t] == "anomaly" for t in range(a.start_ms - a.start_ms % step, a.end_ms, step))
        for a in strong
    )
    # Measured: 31 of 42 and 17 of 27 of the 1.5-3 minute rate changes (seeds 1, 2;
    # 63-88 % over seeds 1-6) are labelled anomaly at the demo spec's threshold.
    assert len(strong) >= 20 and caught / len(strong) >= 0.55
    busy = {
        t - t % step + k * step
        for a in schedule
        for t in (a.start_ms, a.end_ms)
        for k in range(-1, 6)
    }
    for a in schedule:
        busy.update(range(a.start_ms - a.start_ms % step, a.end_ms + 5 * MIN, step))
    quiet = [t for t in labels if t >= warm and t not in busy]
    false_alarms = sum(labels[t] == "anomaly" for t in quiet)
    # Measured: none in ~15,000 quiet windows per seed (quiet scores reach 0.11-0.2).
    assert len(quiet) > 10_000 and false_alarms <= 1


def test_model_results_also_land_in_redis_and_the_api_reads_them_hot(
    tmp_path: Path, redis_url: RedisTarget
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC + "retention: {hot: 30d}\n")
    spec = parse_spec(spec_path.read_text())
    db = tmp_path / "warehouse.duckdb"
    prefix = f"{redis_url.prefix}-models-{uuid.uuid4().hex[:8]}"
    flow = Dataflow("models_redis_test")
    results = op.input("in", flow, TestingSource(_windows(400), batch_size=50))
    sink = ModelStoreSink(db, redis=(redis_url.url, prefix, 30 * 86_400))
    model_stage(results, spec, shards=2, sink=sink, telemetry=ModelTelemetry(CollectorRegistry()))
    run_main(flow)

    hot = RedisModelStore(redis.Redis.from_url(redis_url.url), prefix, 30 * 86_400)
    warm = ModelStore(DuckDBWarehouse(db))
    hot_rows = hot.anomalies("t1", ["views"], 0, 10**13, limit=5000)
    warm_rows = warm.anomalies("t1", 0, 10**13, limit=5000)
    assert len(hot_rows) == len(warm_rows) == 800
    # Same series identity and the same numbers in both stores.
    key = {(r["series_id"], r["window_start"]): r["score"] for r in warm_rows}
    assert {(r["series_id"], r["window_start"]): r["score"] for r in hot_rows} == key
    hot_fc = hot.latest_forecasts("t1", "views")
    warm_fc = warm.latest_forecasts("t1", "views")
    assert [r["series_id"] for r in hot_fc] == sorted(r["series_id"] for r in warm_fc)
    assert {r["issued_after"] for r in hot_fc} == {r["issued_after"] for r in warm_fc}

    settings = Settings(
        spec=spec_path,
        warehouse=f"duckdb:///{db}",
        default_tenant="t1",
        redis_url=redis_url.url,
        redis_prefix=prefix,
    )
    http = keyed_client(create_app(settings, CollectorRegistry()), "t1")
    body = http.get("/v1/anomalies", params={"start": "0", "source": "hot", "limit": 5}).json()
    assert body["source"] == "hot" and len(body["anomalies"]) == 5
    assert body["anomalies"][0]["window_start"] == 399 * 5 * MIN
    assert body["anomalies"][0]["dims"]["country"] in ("de", "fr")
    fc = http.get("/v1/forecasts/views", params={"source": "hot"}).json()
    assert fc["source"] == "hot" and len(fc["forecasts"]) == 2
    assert len(fc["forecasts"][0]["points"]) == 4
    # The warehouse still answers when asked.
    assert http.get("/v1/forecasts/views", params={"source": "warehouse"}).json()["source"] == (
        "warehouse"
    )
