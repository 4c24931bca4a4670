"""``/graphql`` over real Redis and DuckDB: answers, auth, tenancy, limits, batching, schema file.

The stored world is :mod:`tests.integration.readapi_support`'s; the series
are compared with the REST route's answer and with sums of the raw values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.api.graphql import limits
from riffle.api.graphql.limits import MAX_ALIASES, MAX_COST, MAX_DEPTH
from riffle.api.graphql.sdl import sdl
from riffle.api.times import format_instant
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.redis.windows import RedisWindowStore
from tests.conftest import RedisTarget
from tests.integration.readapi_support import COUNTRIES, HOUR, MIN, World, amount

pytestmark = pytest.mark.integration

SDL_FILE = Path(__file__).parents[2] / "docs" / "graphql.schema.graphql"


@pytest.fixture(scope="module")
def world(redis_url: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(redis_url, tmp_path_factory.mktemp("graphql"))


def _client(world: World, tenant: str = "t1", scopes: tuple[str, ...] = ("read",)) -> TestClient:
    return TestClient(world.app, headers={"Authorization": f"Bearer {world.key(tenant, scopes)}"})


def _gql(http: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    answer = http.post("/graphql", json={"query": query, "variables": variables})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code", e["message"]) for e in body.get("errors", [])]


SERIES = """
query Revenue($start: String, $end: String, $after: String) {
  series(metric: "revenue", start: $start, end: $end, step: "1h", groupBy: ["country"],
         first: 2, after: $after) {
    metric stepSeconds totalCount
    pageInfo { hasNextPage endCursor }
    nodes { dims { name value } points { start value count partial } }
  }
}
"""


def test_the_schema_file_is_the_generated_sdl() -> None:
    assert SDL_FILE.read_text(encoding="utf-8") == sdl(), (
        "docs/graphql.schema.graphql is stale: "
        "python -m riffle.api.graphql.sdl > docs/graphql.schema.graphql"
    )


def test_graphql_needs_a_read_key(world: World) -> None:
    query = {"query": "{ metrics { name } }"}
    anonymous = TestClient(world.app).post("/graphql", json=query)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"
    wrong = TestClient(world.app, headers={"X-API-Key": "rfl_nope_nope"}).post(
        "/graphql", json=query
    )
    assert wrong.status_code == 401
    ingest_only = _client(world, scopes=("ingest",)).post("/graphql", json=query)
    assert ingest_only.status_code == 403
    assert ingest_only.json()["error"]["code"] == "insufficient_scope"
    assert _client(world, scopes=("read",)).post("/graphql", json=query).status_code == 200


def test_series_pages_match_the_rest_route_and_the_raw_sums(world: World) -> None:
    http = _client(world)
    window = {"start": str(world.start), "end": str(world.end)}
    first = _gql(http, SERIES, **window)["data"]["series"]
    assert first["totalCount"] == 3 and first["stepSeconds"] == 3600
    assert first["pageInfo"]["hasNextPage"] is True
    rest = _gql(http, SERIES, **window, after=first["pageInfo"]["endCursor"])["data"]["series"]
    assert rest["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    nodes = first["nodes"] + rest["nodes"]
    assert [n["dims"] for n in nodes] == [[{"name": "country", "value": c}] for c in COUNTRIES]
    rest_api = http.get(
        "/v1/metrics/revenue/query",
        params={**window, "step": "1h", "by": "country"},
    ).json()
    assert [[(p["start"], p["value"], p["count"]) for p in n["points"]] for n in nodes] == [
        [(p["start"], p["value"], p["count"]) for p in g["points"]] for g in rest_api["groups"]
    ]
    de = {p["start"]: p["value"] for p in nodes[0]["points"]}
    expected = world.expected_sum(world.start, world.end, HOUR, countries=["de"])
    assert de == pytest.approx({format_instant(k): v for k, v in expected.items()})


def test_filters_ratios_and_top(world: World) -> None:
    http = _client(world)
    query = """
    query ($start: String, $end: String) {
      mobile: series(metric: "revenue", start: $start, end: $end, step: "1h",
                     filters: [{dimension: "device", values: ["mobile"]},
                               {dimension: "country", values: ["de", "fr"]}]) {
        nodes { points { value } }
      }
      conversion: series(metric: "conversion", start: $start, end: $end, step: "1h") {
        nodes { points { value numerator denominator } }
      }
      top(metric: "revenue", by: "country", start: $start, end: $end, limit: 2) {
        by items { key value }
      }
      metric(name: "conversion") { kind numerator denominator dimensions }
    }
    """
    data = _gql(http, query, start=str(world.start), end=str(world.end))["data"]
    [mobile] = data["mobile"]["nodes"]
    total = sum(p["value"] for p in mobile["points"])
    expected = sum(
        amount(m, c, "mobile")
        for m in range((world.end - world.start) // MIN)
        for c in ("de", "fr")
    )
    assert total == pytest.approx(expected)
    [conversion] = data["conversion"]["nodes"]
    assert all(p["denominator"] > 0 for p in conversion["points"])
    assert all(p["value"] == pytest.approx(p["numerator"] / p["denominator"])
               for p in conversion["points"])  # fmt: skip
    ranked = data["top"]["items"]
    assert len(ranked) == 2 and ranked[0]["value"] >= ranked[1]["value"]
    assert data["metric"] == {
        "kind": "ratio", "numerator": "purchases", "denominator": "sessions",
        "dimensions": ["country"],
    }  # fmt: skip


def test_models_alerts_and_dead_letters(world: World) -> None:
    http = _client(world)
    query = """
    {
      anomalies(label: "anomaly") {
        source nodes { metric windowStartMs score dims { name value } }
      }
      alerts { instance state atMs labels { name value } ack { by } }
      alertHistory(first: 1) { nodes { toState atMs } pageInfo { hasNextPage endCursor } }
      deadLetters(first: 10) { nodes { id } pageInfo { hasNextPage endCursor } }
      insights(kinds: ["unusual"]) { kind metric statement }
    }
    """
    data = _gql(http, query)["data"]
    [anomaly] = data["anomalies"]["nodes"]
    assert anomaly["windowStartMs"] == world.spike_at and anomaly["score"] == 0.98
    assert anomaly["dims"] == [{"name": "country", "value": "de"},
                               {"name": "device", "value": "mobile"}]  # fmt: skip
    [alert] = data["alerts"]
    assert alert["state"] == "firing" and alert["atMs"] == world.end - 2 * MIN
    assert alert["ack"] is None
    page = data["alertHistory"]
    assert page["nodes"] == [{"toState": "normal", "atMs": world.fired_at + 5 * MIN}]
    after = page["pageInfo"]["endCursor"]
    next_page = "query ($a: String) { alertHistory(first: 1, after: $a) { nodes { toState } "
    next_page += "pageInfo { hasNextPage } } }"
    second = _gql(http, next_page, a=after)["data"]["alertHistory"]
    assert second == {"nodes": [{"toState": "firing"}], "pageInfo": {"hasNextPage": False}}
    assert data["deadLetters"] == {"nodes": [], "pageInfo": {"hasNextPage": False,
                                                             "endCursor": None}}  # fmt: skip
    assert [i["kind"] for i in data["insights"]] == ["unusual"]


def test_another_tenants_data_is_invisible(world: World) -> None:
    other = _client(world, tenant="t2")
    query = """
    { series(metric: "revenue", start: "-3h", step: "1h") { nodes { points { value } } }
      anomalies { nodes { dims { name value } } }
      alertHistory { nodes { atMs } }
      alerts { instance } }
    """
    data = _gql(other, query)["data"]
    assert min(p["value"] for p in data["series"]["nodes"][0]["points"]) > 1e6
    [anomaly] = data["anomalies"]["nodes"]
    assert {"name": "country", "value": "us"} in anomaly["dims"]
    assert len(data["alertHistory"]["nodes"]) == 1
    assert data["alerts"] == []


def test_client_errors_carry_the_rest_codes(world: World) -> None:
    http = _client(world)
    cases = {
        '{ series(metric: "nope") { metric } }': "metric_not_found",
        '{ series(metric: "revenue", step: "5m") { metric } }': "invalid_step",
        '{ series(metric: "revenue", groupBy: ["colour"]) { metric } }': "unknown_dimension",
        '{ series(metric: "revenue", start: "yesterday") { metric } }': "invalid_time",
        '{ series(metric: "revenue", first: 0) { metric } }': "invalid_first",
        '{ series(metric: "revenue", after: "garbage") { metric } }': "invalid_cursor",
        '{ top(metric: "revenue", by: "country", limit: 500) { by } }': "invalid_limit",
        "{ anomalies(minScore: 2) { source } }": "invalid_min_score",
        '{ forecasts(metric: "revenue") { seriesId } }': "not_forecast",
        '{ predictions(entityType: "user", entityId: "u1") { source } }': "unknown_entity_type",
        '{ deadLetters(failureType: "gossip") { nodes { id } } }': "invalid_filter",
        '{ alerts(states: ["sleepy"]) { instance } }': "bad_state",
        '{ metric(name: "revenue") { dimensionValues(dimension: "colour") } }': (
            "unknown_dimension"
        ),
    }
    for query, code in cases.items():
        body = _gql(http, query)
        assert _codes(body) == [code], (query, body)
        assert 400 <= body["errors"][0]["extensions"]["status"] < 500


def test_depth_alias_token_and_cost_limits_refuse_with_clear_errors(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = _client(world)
    fragments = (
        "fragment P on Point { value } fragment S on Series { points { ...P } } "
        'query { series(metric: "revenue") { nodes { ...S dims { name } } } }'
    )
    assert "errors" not in _gql(http, fragments)
    aliases = "{ " + " ".join(f"m{i}: metrics {{ name }}" for i in range(MAX_ALIASES + 1)) + " }"
    assert "aliases" in _gql(http, aliases)["errors"][0]["message"]
    tokens = "{ metrics { " + " ".join(["name"] * 2_100) + " } }"
    assert "token" in _gql(http, tokens)["errors"][0]["message"].lower()
    costly = "{ " + " ".join(f's{i}: series(metric: "revenue") {{ metric }}' for i in range(16))
    body = _gql(http, costly + " }")
    assert _codes(body) == ["query_too_costly"]
    assert str(MAX_COST) in body["errors"][0]["message"]
    # The schema has no cycles: its deepest selection is 4 levels, inside MAX_DEPTH; a
    # tighter limit shows the limiter at work on the same (fragment-spread) document.
    assert MAX_DEPTH >= 4
    monkeypatch.setattr(limits, "MAX_DEPTH", 2)
    deep = _gql(http, fragments)
    assert any("exceeds maximum operation depth" in e["message"] for e in deep["errors"])


def test_per_metric_fields_are_one_redis_pipeline_per_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """metrics { dimensionValues forecasts } reads Redis once per field, not once per metric."""
    calls: dict[str, list[Any]] = {"many": [], "one": [], "forecasts": []}
    many, one = RedisWindowStore.list_series_many, RedisWindowStore.list_series
    forecasts = RedisModelStore.latest_forecasts_many

    def spy_many(self: RedisWindowStore, tenant: str, metrics: Any) -> Any:
        calls["many"].append(list(metrics))
        return many(self, tenant, metrics)

    def spy_one(self: RedisWindowStore, tenant: str, metric: str) -> Any:
        calls["one"].append(metric)
        return one(self, tenant, metric)

    def spy_forecasts(self: RedisModelStore, tenant: str, metrics: Any) -> Any:
        calls["forecasts"].append(list(metrics))
        return forecasts(self, tenant, metrics)

    monkeypatch.setattr(RedisWindowStore, "list_series_many", spy_many)
    monkeypatch.setattr(RedisWindowStore, "list_series", spy_one)
    monkeypatch.setattr(RedisModelStore, "latest_forecasts_many", spy_forecasts)
    query = '{ metrics { name dimensionValues(dimension: "country") forecasts { seriesId } } }'
    data = _gql(_client(world), query)["data"]["metrics"]
    assert [m["dimensionValues"] for m in data] == [list(COUNTRIES)] * 4
    assert calls["one"] == []
    # Four metrics (the ratio reads its two parts): one pipeline over the distinct stored ones.
    assert calls["many"] == [["revenue", "purchases", "sessions"]]
    assert calls["forecasts"] == [["revenue", "purchases", "sessions"]]


def test_graphiql_only_in_development(world: World) -> None:
    http = _client(world)
    page = http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    production = world.settings.model_copy(
        update={"environment": "production", "api_key_pepper": world.settings.api_key_pepper}
    )
    app = create_app(production, CollectorRegistry())
    key, _ = app.state.collect.keys.create("t1", ["read"])
    closed = TestClient(app, headers={"X-API-Key": key}).get(
        "/graphql", headers={"Accept": "text/html"}
    )
    assert "graphiql" not in closed.text.lower()


def test_operations_are_logged_with_their_cost(world: World) -> None:
    registry = CollectorRegistry()
    app = create_app(world.settings, registry)
    key, _ = app.state.collect.keys.create("t1", ["read"])
    http = TestClient(app, headers={"X-API-Key": key})
    _gql(http, '{ metrics { name } series(metric: "revenue") { metric } }')
    assert registry.get_sample_value("riffle_api_graphql_cost_count") == 1
    # metrics (1) + name (1) + series (20) + metric (1)
    assert registry.get_sample_value("riffle_api_graphql_cost_sum") == 23
