"""``GET /v1/insights`` over windows and anomaly scores stored in a real DuckDB warehouse."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.operators.models.base import AnomalyScore
from riffle.operators.models.series import AnomalyRecord
from riffle.operators.records import WindowResult
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.model_results import ModelStore
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.integration.stores_support import valued

MIN = 60_000
END = 1_700_006_400_000
SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - name: views
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 1m
    anomaly: {}
"""


def _window(tenant: str, country: str, start: int, value: float) -> WindowResult:
    return valued("views", (("country", country),), start, MIN, value, tenant)


def test_insights_feed_states_trend_movers_and_unusual_values(
    tmp_path: Path, redis_url: RedisTarget
) -> None:
    db = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(db)
    warehouse.init()
    windows = []
    for i in range(120):  # two hours of minutes, the last one is the insights' period
        start = END - (120 - i) * MIN
        de = 20.0 if i < 60 else 20.0 + (i - 60)  # flat, then rising one view a minute
        windows += [_window("t1", "de", start, de), _window("t1", "fr", start, 10.0 + i % 2)]
        windows.append(_window("t2", "it", start, 5.0))
    warehouse.upsert_windows(windows)
    spike_at = END - 10 * MIN
    ModelStore(warehouse).write(
        [
            AnomalyRecord(
                "t1",
                "views",
                (("country", "de"),),
                spike_at,
                "riffle",
                AnomalyScore(spike_at, 70.0, 0.97, "anomaly", 30.0, 25.0, 35.0, 9.0, "far out"),
            )
        ]
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    settings = Settings(
        spec=spec,
        warehouse=f"duckdb:///{db}",
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-insights",
    )
    app = create_app(settings, CollectorRegistry())
    http = keyed_client(app, "t1")
    body = http.get("/v1/insights", params={"end": str(END), "period": "1h"}).json()
    assert body["period"] == {
        "start": END - 60 * MIN,
        "end": END,
        "previous_start": END - 120 * MIN,
        "length": "1h",
    }
    feed = body["insights"]
    kinds = [i["kind"] for i in feed]
    assert kinds[0] == "unusual" and "trend" in kinds and "top_mover" in kinds
    assert feed[0]["statement"].startswith("views{country=de} was 70 at")
    [trend] = [i for i in feed if i["kind"] == "trend"]
    # The total (de + fr) rises by one a minute over the last hour.
    assert trend["numbers"]["slope_per_window"] == 1.0 and trend["numbers"]["tau"] > 0.9
    movers = [i for i in feed if i["kind"] == "top_mover"]
    assert [m["dims"] for m in movers] == [{"country": "de"}]
    # de: 60 * 20 = 1200 before, sum(20..79) = 2970 now.
    assert movers[0]["numbers"]["previous"] == 1200 and movers[0]["numbers"]["current"] == 2970
    only = http.get(
        "/v1/insights", params={"end": str(END), "kind": "trend", "metric": "views"}
    ).json()
    assert [i["kind"] for i in only["insights"]] == ["trend"]

    # Another tenant's feed holds only its own (flat) series: nothing to say.
    other = keyed_client(app, "t2").get("/v1/insights", params={"end": str(END)}).json()
    assert other["insights"] == []
    assert http.get("/v1/insights", params={"period": "soon"}).status_code == 400
    assert http.get("/v1/insights", params={"period": "10s"}).status_code == 400
    assert http.get("/v1/insights", params={"kind": "gossip"}).status_code == 400
    assert http.get("/v1/insights", params={"metric": "nope"}).status_code == 404
