"""The HTTP API against real Redis and a DuckDB file, seeded through the stores."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.api.routes.metrics import MAX_WINDOWS
from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.operators.records import WindowResult
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from tests.integration.stores_support import REDIS_URL, delete_prefix, unique_prefix, window

pytestmark = pytest.mark.integration

MIN = 60_000
TENANT = "demo"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """An app with its own Redis prefix, DuckDB file and registry, and the stores to seed."""

    def __init__(self, tmp_path: Path, client: redis.Redis, **overrides: Any) -> None:
        self.prefix = unique_prefix()
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "redis_prefix": self.prefix,
            "warehouse": f"duckdb:///{tmp_path}/warehouse.duckdb",
            "kafka_bootstrap": f"127.0.0.1:{unused_port()}",
            "default_tenant": TENANT,
            "hot_horizon_seconds": 600,
        }
        self.settings = Settings(**(values | overrides))
        self.registry = CollectorRegistry()
        self.app = create_app(self.settings, self.registry)
        try:
            key, _ = self.app.state.collect.keys.create(TENANT, ["read"])
        except SinkError:  # a test of a Redis that is down: the key check answers 503
            key = "rfl_000000000000_unreachable"
        self.http = TestClient(self.app, headers={"Authorization": f"Bearer {key}"})
        self.hot = RedisWindowStore(client, self.prefix, 3600)
        self.cold = DuckDBWarehouse(self.settings.duckdb_path)
        self.now = int(time.time() * 1000)
        self.minute = self.now - self.now % MIN

    def at(self, minutes_ago: int) -> int:
        return self.minute - minutes_ago * MIN

    def series(self, metric: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(f"/v1/metrics/{metric}/series", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def stack(tmp_path: Path, client: redis.Redis) -> Iterator[Stack]:
    stack = Stack(tmp_path, client)
    yield stack
    delete_prefix(client, stack.prefix)


def latency(
    start: int, endpoint: str, status: str, values: tuple[float, ...], **kw: Any
) -> WindowResult:
    dims = (("endpoint", endpoint), ("status_class", status))
    return window(
        start, dims, values=values, metric="api_latency_avg", aggregation="avg", tenant=TENANT, **kw
    )


def error_of(response: Any, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    error: dict[str, str] = body["error"]
    return error


def test_metric_definitions(stack: Stack) -> None:
    listing = stack.http.get("/v1/metrics").json()["metrics"]
    assert [m["name"] for m in listing] == [m.name for m in load_spec("config/demo.yaml").metrics]
    errors = next(m for m in listing if m["name"] == "api_errors")
    assert errors["filter"] == [{"path": "props.status", "op": "gte", "value": 500}]
    one = stack.http.get("/v1/metrics/avg_order_value").json()
    assert one == {
        "name": "avg_order_value",
        "description": "Mean order amount.",
        "unit": "currency units",
        "events": ["purchase"],
        "aggregation": "avg",
        "value": "props.amount",
        "dimensions": ["currency"],
        "window_seconds": 60,
        "filter": [],
    }
    assert error_of(stack.http.get("/v1/metrics/nope"), 404)["code"] == "metric_not_found"


def test_series_per_series_with_live_partial(stack: Stack) -> None:
    stack.hot.write(
        [latency(stack.at(m), "/a", "2xx", (10.0, 20.0)) for m in (3, 2, 1)]
        + [latency(stack.at(0), "/a", "2xx", (50.0,), final=False, revision=4)]
        + [latency(stack.at(1), "/b", "5xx", (7.0,))]
    )
    body = stack.series("api_latency_avg", start="-10m")
    assert body["metric"] == "api_latency_avg"
    assert (body["aggregation"], body["window_seconds"], body["group_by"]) == ("avg", 60, None)
    assert [s["dims"] for s in body["series"]] == [
        {"endpoint": "/a", "status_class": "2xx"},
        {"endpoint": "/b", "status_class": "5xx"},
    ]
    points = body["series"][0]["points"]
    assert [p["value"] for p in points] == [15.0, 15.0, 15.0, 50.0]
    assert [p["is_final"] for p in points] == [True, True, True, False]
    assert points[-1]["revision"] == 4
    first = stack.at(3)
    assert points[0]["window_start"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(first / 1000)
    )
    assert points[0]["window_end"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime((first + MIN) / 1000)
    )
    # The range start is aligned down to a window start and is inclusive; end is exclusive.
    ranged = stack.series(
        "api_latency_avg", start=str(stack.at(2) + 1), end=str(stack.at(0)), endpoint="/a"
    )
    assert ranged["start"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stack.at(2) / 1000))
    assert len(ranged["series"][0]["points"]) == 2


def test_hot_and_cold_merge_without_gaps_or_duplicates(stack: Stack) -> None:
    # The warehouse has finals from 40 to 3 minutes ago; Redis from 5 minutes ago
    # (its older windows expired there). The horizon is 10 minutes.
    stack.cold.upsert_windows([latency(stack.at(m), "/a", "2xx", (1.0,)) for m in range(40, 2, -1)])
    stack.hot.write(
        [latency(stack.at(m), "/a", "2xx", (2.0,)) for m in range(5, 0, -1)]
        + [latency(stack.at(0), "/a", "2xx", (3.0,), final=False)]
    )
    body = stack.series("api_latency_avg", start="-45m")
    [series] = body["series"]
    starts = [p["window_start"] for p in series["points"]]
    assert len(starts) == len(set(starts)) == 41
    values = [p["value"] for p in series["points"]]
    assert values == [1.0] * 35 + [2.0] * 5 + [3.0]  # Redis wins where both have a window
    # Within the horizon and with Redis covering the start, the warehouse is not needed.
    recent = stack.series("api_latency_avg", start=str(stack.at(4)))
    assert [p["value"] for p in recent["series"][0]["points"]] == [2.0] * 4 + [3.0]


def test_group_by_merges_exactly(stack: Stack) -> None:
    stack.hot.write(
        [
            latency(stack.at(1), "/a", "2xx", (10.0, 20.0, 30.0), revision=2),
            latency(stack.at(1), "/a", "5xx", (100.0,), revision=3),
            latency(stack.at(1), "/b", "2xx", (1.0, 3.0)),
            latency(stack.at(0), "/a", "2xx", (40.0,), final=False, revision=1),
        ]
    )
    body = stack.series("api_latency_avg", start="-5m", group_by="endpoint")
    assert body["group_by"] == ["endpoint"]
    assert [s["dims"] for s in body["series"]] == [{"endpoint": "/a"}, {"endpoint": "/b"}]
    merged, live = body["series"][0]["points"]
    assert merged["value"] == pytest.approx(160.0 / 4)  # not the mean of 20 and 100
    assert (merged["count"], merged["is_final"], merged["revision"]) == (4, True, 5)
    assert (live["value"], live["is_final"]) == (40.0, False)
    everything = stack.series("api_latency_avg", start="-5m", group_by="")
    assert everything["group_by"] == []
    [total] = everything["series"]
    assert total["dims"] == {}
    assert total["points"][0]["value"] == pytest.approx(164.0 / 6)
    filtered = stack.series("api_latency_avg", start="-5m", group_by="endpoint", status_class="2xx")
    assert filtered["series"][0]["points"][0]["value"] == pytest.approx(20.0)


def test_dimension_filters(stack: Stack) -> None:
    stack.hot.write(
        [latency(stack.at(1), e, s, (1.0,)) for e in ("/a", "/b", "/c") for s in ("2xx", "5xx")]
    )

    def dims(**filters: Any) -> list[tuple[str, str]]:
        body = stack.series("api_latency_avg", start="-5m", **filters)
        return [(s["dims"]["endpoint"], s["dims"]["status_class"]) for s in body["series"]]

    assert dims(endpoint=["/a", "/c"], status_class="5xx") == [("/a", "5xx"), ("/c", "5xx")]
    assert dims(endpoint="/b") == [("/b", "2xx"), ("/b", "5xx")]
    assert dims(endpoint="/zzz") == []


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/metrics/api_latency_avg/series?country=de", "unknown_dimension"),
        ("/v1/metrics/api_latency_avg/series?group_by=endpoint,country", "unknown_dimension"),
        ("/v1/metrics/api_latency_avg/series?start=-5m&end=-10m", "invalid_range"),
        ("/v1/metrics/api_latency_avg/series?start=now&end=now", "invalid_range"),
        ("/v1/metrics/api_latency_avg/series?start=yesterday", "invalid_time"),
        ("/v1/metrics/api_latency_avg/series?end=2024-01-01T00:00:00", "invalid_time"),
        ("/v1/metrics/page_views_10s/series?start=-2d", "range_too_large"),
    ],
)
def test_bad_requests_are_json_400(stack: Stack, path: str, code: str) -> None:
    assert error_of(stack.http.get(path), 400)["code"] == code


def test_range_cap_is_per_window_count(stack: Stack) -> None:
    # 10,000 one-minute windows are allowed, one more is not.
    end = stack.at(0)
    ok = stack.http.get(
        "/v1/metrics/page_views/series",
        params={"start": str(end - MAX_WINDOWS * MIN), "end": str(end)},
    )
    assert ok.status_code == 200
    too_long = stack.http.get(
        "/v1/metrics/page_views/series",
        params={"start": str(end - (MAX_WINDOWS + 1) * MIN), "end": str(end)},
    )
    assert "10000" in error_of(too_long, 400)["message"]


def test_other_errors_are_json(stack: Stack) -> None:
    assert error_of(stack.http.get("/v2/nothing"), 404)["code"] == "not_found"
    assert error_of(stack.http.post("/v1/metrics"), 405)["code"] == "method_not_allowed"
    assert error_of(stack.http.get("/v1/metrics/nope/series"), 404)["code"] == "metric_not_found"


def test_health_readiness_and_a_down_broker(stack: Stack) -> None:
    assert stack.http.get("/healthz").json() == {"status": "ok"}
    response = stack.http.get("/readyz")
    error = error_of(response, 503)
    assert error["code"] == "not_ready"
    assert "kafka" in error["message"]
    checks = response.json()["checks"]
    assert checks["kafka"]["status"] == "failed"
    assert stack.settings.kafka_servers in checks["kafka"]["detail"]
    assert (checks["redis"]["status"], checks["warehouse"]["status"]) == ("ok", "ok")


def test_down_redis_is_a_503(tmp_path: Path, client: redis.Redis) -> None:
    stack = Stack(tmp_path, client, redis_url=f"redis://127.0.0.1:{unused_port()}/0")
    error = error_of(stack.http.get("/v1/metrics/page_views/series"), 503)
    assert error["code"] == "store_unavailable"
    checks = stack.http.get("/readyz").json()["checks"]
    assert checks["redis"]["status"] == "failed"


def test_prometheus_metrics_count_by_route_template(stack: Stack) -> None:
    for _ in range(3):
        stack.http.get("/v1/metrics/page_views")
    stack.http.get("/v1/metrics/nope")
    stack.http.get("/v2/nothing")

    def requests(route: str, status: str) -> float | None:
        labels = {"method": "GET", "route": route, "status": status}
        return stack.registry.get_sample_value("riffle_api_requests_total", labels)

    assert requests("/v1/metrics/{name}", "200") == 3
    assert requests("/v1/metrics/{name}", "404") == 1
    assert requests("<unmatched>", "404") == 1
    labels = {"method": "GET", "route": "/v1/metrics/{name}", "status": "200"}
    assert stack.registry.get_sample_value("riffle_api_request_duration_seconds_count", labels) == 3
    exposition = stack.http.get("/metrics")
    assert exposition.status_code == 200
    assert (
        'riffle_api_requests_total{method="GET",route="/v1/metrics/{name}",status="200"} 3.0'
        in (exposition.text)
    )


def test_openapi_docs(stack: Stack) -> None:
    assert stack.http.get("/docs").status_code == 200
    labels = {"method": "GET", "route": "/docs", "status": "200"}
    assert stack.registry.get_sample_value("riffle_api_requests_total", labels) == 1
    schema = stack.http.get("/openapi.json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "listMetrics",
        "getMetric",
        "getMetricSeries",
        "getHealth",
        "getReadiness",
    } <= operations


def test_unexpected_errors_are_json_500(stack: Stack) -> None:
    @stack.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    http = TestClient(stack.app, raise_server_exceptions=False)
    assert error_of(http.get("/boom"), 500)["code"] == "internal"
    labels = {"method": "GET", "route": "/boom", "status": "500"}
    assert stack.registry.get_sample_value("riffle_api_requests_total", labels) == 1
