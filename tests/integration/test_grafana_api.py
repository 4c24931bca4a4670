"""``/grafana``: the JSON datasource protocol, with bodies shaped as the plugin's README shows.

Real Redis and DuckDB hold the world of :mod:`tests.integration.readapi_support`;
answers are checked against sums computed from the raw values. Grafana itself
is not installable here: these request and response shapes are the proof.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from riffle.api.times import format_instant
from riffle.dashboards import ALL, as_json, spec_dashboard
from tests.conftest import RedisTarget
from tests.integration.readapi_support import COUNTRIES, HOUR, MIN, World

pytestmark = pytest.mark.integration

ROUTES = [
    ("GET", "/grafana", None),
    ("POST", "/grafana/metrics", {}),
    (
        "POST",
        "/grafana/metric-payload-options",
        {"metric": "revenue", "payload": {}, "name": "country"},
    ),
    ("POST", "/grafana/query", None),
    ("POST", "/grafana/variable", {"payload": {"target": "values(country)"}}),
    ("POST", "/grafana/tag-keys", {}),
    ("POST", "/grafana/tag-values", {"key": "country"}),
    ("POST", "/grafana/annotations", None),
]


@pytest.fixture(scope="module")
def world(redis_url: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(redis_url, tmp_path_factory.mktemp("grafana"))


def _client(world: World, tenant: str = "t1", scopes: tuple[str, ...] = ("read",)) -> TestClient:
    return TestClient(world.app, headers={"X-API-Key": world.key(tenant, scopes)})


def _range(start: int, end: int) -> dict[str, Any]:
    return {"from": format_instant(start), "to": format_instant(end),
            "raw": {"from": "now-3h", "to": "now"}}  # fmt: skip


def _query(world: World, targets: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A /query body as the plugin's README shows it."""
    return {
        "panelId": 1,
        "range": _range(world.start, world.end),
        "rangeRaw": {"from": "now-3h", "to": "now"},
        "interval": "1m",
        "intervalMs": 60_000,
        "maxDataPoints": 550,
        "targets": targets,
        "adhocFilters": [],
        **extra,
    }


def _body(world: World, path: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
    if path == "/grafana/query":
        return _query(world, [{"target": "revenue", "refId": "A"}])
    if path == "/grafana/annotations":
        return {"range": _range(world.start, world.end), "annotation": {"name": "a", "query": ""}}
    return body


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_needs_a_read_key(
    world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    payload = _body(world, path, body)
    anonymous = TestClient(world.app).request(method, path, json=payload)
    assert anonymous.status_code == 401, anonymous.text
    ingest_only = _client(world, scopes=("ingest",)).request(method, path, json=payload)
    assert ingest_only.status_code == 403
    assert ingest_only.json()["error"]["code"] == "insufficient_scope"
    assert _client(world).request(method, path, json=payload).status_code == 200


def test_test_connection_names_the_tenant(world: World) -> None:
    assert _client(world).get("/grafana").json() == {"status": "ok", "tenant": "t1"}
    assert _client(world).get("/grafana/").status_code == 200


def test_metrics_list_payload_options_per_metric(world: World) -> None:
    body = _client(world).post("/grafana/metrics", json={}).json()
    assert [m["value"] for m in body] == ["revenue", "purchases", "sessions", "conversion"]
    revenue = body[0]
    names = [p["name"] for p in revenue["payloads"]]
    assert names == ["group_by", "field", "format", "country", "device"]
    group_by = revenue["payloads"][0]
    assert group_by["type"] == "multi-select"
    assert [o["value"] for o in group_by["options"]] == ["country", "device"]
    ratio_fields = [o["value"] for o in body[3]["payloads"][1]["options"]]
    assert ratio_fields == ["value", "numerator", "denominator"]


def test_payload_options_list_dimension_values_of_the_tenant_only(world: World) -> None:
    http = _client(world)
    body = {"metric": "revenue", "payload": {"group_by": "country"}, "name": "device"}
    answer = http.post("/grafana/metric-payload-options", json=body).json()
    assert answer == [
        {"label": "desktop", "value": "desktop"},
        {"label": "mobile", "value": "mobile"},
    ]
    body["name"] = "group_by"
    grouped = http.post("/grafana/metric-payload-options", json=body).json()
    assert [o["value"] for o in grouped] == ["country", "device"]
    body["name"] = "colour"
    assert http.post("/grafana/metric-payload-options", json=body).status_code == 400
    body["metric"] = "nope"
    assert http.post("/grafana/metric-payload-options", json=body).status_code == 404


def test_query_returns_time_series_matching_the_raw_sums(world: World) -> None:
    http = _client(world)
    answer = http.post("/grafana/query", json=_query(world, [{"target": "revenue", "refId": "A"}]))
    assert answer.status_code == 200, answer.text
    [series] = answer.json()
    assert series["target"] == "revenue"
    # 3 h of minutes fit in 550 points at 1 m, so the step is the window.
    expected = world.expected_sum(world.start, world.end, MIN)
    assert {ts: v for v, ts in series["datapoints"]} == pytest.approx(expected)


def test_max_data_points_and_interval_pick_the_step(world: World) -> None:
    http = _client(world)
    body = _query(world, [{"target": "revenue", "refId": "A"}], maxDataPoints=20)
    [series] = http.post("/grafana/query", json=body).json()
    stamps = [ts for _, ts in series["datapoints"]]
    # 180 minutes in at most 20 points: 10-minute buckets (the ladder's first that fits).
    assert {b - a for a, b in itertools.pairwise(stamps)} == {10 * MIN}
    assert len(stamps) <= 20
    expected = world.expected_sum(world.start, world.end, 10 * MIN)
    assert {ts: v for v, ts in series["datapoints"]} == pytest.approx(expected)
    coarse = _query(world, [{"target": "revenue", "refId": "A"}], intervalMs=HOUR)
    [hourly] = http.post("/grafana/query", json=coarse).json()
    hours = [ts for _, ts in hourly["datapoints"]]
    assert len(hours) in (3, 4) and all(ts % HOUR == 0 for ts in hours)


def test_group_by_payload_and_filters_split_and_narrow_series(world: World) -> None:
    http = _client(world)
    target = {"target": "revenue", "refId": "A",
              "payload": {"group_by": ["country"], "device": "mobile"}}  # fmt: skip
    answer = http.post("/grafana/query", json=_query(world, [target])).json()
    assert [s["target"] for s in answer] == [f'revenue{{country="{c}"}}' for c in COUNTRIES]
    # A regex-formatted multi-value variable ((de|fr)) and an ad-hoc filter narrow further.
    target["payload"] = {"group_by": "country", "country": "(de|fr)"}
    adhoc = [{"key": "device", "operator": "=", "value": "desktop"},
             {"key": "campaign", "operator": "=", "value": "x"}]  # fmt: skip
    narrowed = http.post("/grafana/query", json=_query(world, [target], adhocFilters=adhoc))
    assert [s["target"] for s in narrowed.json()] == [
        'revenue{country="de"}',
        'revenue{country="fr"}',
    ]
    ne = [{"key": "device", "operator": "!=", "value": "desktop"}]
    refused = http.post("/grafana/query", json=_query(world, [target], adhocFilters=ne))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsupported_filter"


def test_table_format_and_ratio_fields(world: World) -> None:
    http = _client(world)
    table = {"target": "revenue", "refId": "A",
             "payload": {"format": "table", "group_by": "country", "field": "sum"}}  # fmt: skip
    [frame] = http.post("/grafana/query", json=_query(world, [table])).json()
    assert frame["type"] == "table"
    assert frame["columns"] == [
        {"text": "Time", "type": "time"},
        {"text": "country", "type": "string"},
        {"text": "revenue sum", "type": "number"},
    ]
    assert len(frame["rows"]) == 3 * 180
    de = {row[0]: row[2] for row in frame["rows"] if row[1] == "de"}
    assert de == pytest.approx(world.expected_sum(world.start, world.end, MIN, countries=["de"]))
    ratio = {"target": "conversion", "refId": "B", "payload": {"field": "denominator"}}
    [series] = http.post("/grafana/query", json=_query(world, [ratio])).json()
    assert {v for v, _ in series["datapoints"]} == {30.0}  # 3 countries x 10 sessions a minute
    hidden = {"target": "revenue", "refId": "C", "hide": True}
    assert http.post("/grafana/query", json=_query(world, [hidden])).json() == []


def test_query_refuses_bad_bodies_with_4xx(world: World) -> None:
    http = _client(world)
    cases = [
        _query(world, [{"target": "nope", "refId": "A"}]),
        _query(world, [{"target": "revenue", "payload": {"colour": "red"}}]),
        _query(world, [{"target": "revenue", "payload": {"field": "median"}}]),
        _query(world, [{"target": "revenue", "payload": {"format": "heatmap"}}]),
        _query(world, [{"target": "revenue", "payload": "{not json"}]),
        {**_query(world, []), "range": {"from": "yesterday", "to": "now"}},
        {**_query(world, []), "range": _range(world.end, world.start)},
        {"targets": []},
    ]
    for body in cases:
        answer = http.post("/grafana/query", json=body)
        assert 400 <= answer.status_code < 500, (body, answer.text)


def test_another_tenants_data_is_invisible(world: World) -> None:
    other = _client(world, tenant="t2")
    [series] = other.post("/grafana/query", json=_query(world, [{"target": "revenue"}])).json()
    assert min(v for v, _ in series["datapoints"]) >= 1e6  # only t2's own, much larger numbers
    mine = _client(world)
    [own] = mine.post("/grafana/query", json=_query(world, [{"target": "revenue"}])).json()
    assert max(v for v, _ in own["datapoints"]) < 1e6
    notes = other.post(
        "/grafana/annotations",
        json={"range": _range(world.start, world.end), "annotation": {"query": ""}},
    ).json()
    assert {n["tags"][0] for n in notes} == {"alert", "anomaly"}
    assert all("us" in n["title"] for n in notes if n["tags"][0] == "anomaly")
    assert len([n for n in notes if n["tags"][0] == "alert"]) == 1


def test_variables_and_ad_hoc_keys_and_values(world: World) -> None:
    http = _client(world)

    def variable(payload: Any) -> list[str]:
        answer = http.post(
            "/grafana/variable", json={"payload": payload, "range": _range(world.start, world.end)}
        )
        assert answer.status_code == 200, answer.text
        rows = answer.json()
        assert all(r["__text"] == r["__value"] for r in rows)
        return [r["__value"] for r in rows]  # fmt: skip

    assert variable({"target": "metrics"}) == ["revenue", "purchases", "sessions", "conversion"]
    assert variable({"target": "dimensions(revenue)"}) == ["country", "device"]
    assert variable({"target": "values(country)"}) == list(COUNTRIES)
    assert variable({"target": "values", "metric": "conversion", "dimension": "country"}) == list(
        COUNTRIES
    )
    assert variable("values(revenue, device)") == ["desktop", "mobile"]
    for bad in ({"target": "drop tables"}, {"target": "values(a, b, c)"},
                {"target": "values(colour)"}, {"target": "dimensions(nope)"}):  # fmt: skip
        assert 400 <= http.post("/grafana/variable", json={"payload": bad}).status_code < 500
    keys = http.post("/grafana/tag-keys", json={}).json()
    assert keys == [{"type": "string", "text": "country"}, {"type": "string", "text": "device"}]
    values = http.post("/grafana/tag-values", json={"key": "device"}).json()
    assert values == [{"text": "desktop"}, {"text": "mobile"}]
    assert http.post("/grafana/tag-values", json={"key": "colour"}).status_code == 400


def test_annotations_carry_alert_transitions_and_anomalies(world: World) -> None:
    http = _client(world)
    annotation = {"name": "Alerts", "datasource": "Riffle", "iconColor": "red", "enable": True,
                  "query": ""}  # fmt: skip
    body = {"range": _range(world.start, world.end), "rangeRaw": {"from": "now-3h", "to": "now"},
            "annotation": annotation}  # fmt: skip
    notes = http.post("/grafana/annotations", json=body).json()
    alerts = [n for n in notes if n["tags"][0] == "alert"]
    assert [(n["time"], n["title"]) for n in alerts] == [
        (world.fired_at, "high_revenue: normal → firing"),
        (world.fired_at + 5 * MIN, "high_revenue: firing → normal"),
    ]
    assert alerts[0]["tags"] == ["alert", "high_revenue", "firing", "page"]
    assert "revenue above 100" in alerts[0]["text"]
    assert alerts[0]["annotation"]["name"] == "Alerts"
    [anomaly] = [n for n in notes if n["tags"][0] == "anomaly"]
    assert anomaly["time"] == world.spike_at and anomaly["timeEnd"] == world.spike_at + MIN
    assert anomaly["title"] == "anomaly in revenue (country=de, device=mobile)"
    assert anomaly["isRegion"] is True
    only = {**body, "annotation": {**annotation, "query": "anomalies revenue"}}
    assert [n["tags"][0] for n in http.post("/grafana/annotations", json=only).json()] == [
        "anomaly"
    ]
    none = {**body, "annotation": {**annotation, "query": "alerts other_rule"}}
    assert http.post("/grafana/annotations", json=none).json() == []
    bad = {**body, "annotation": {**annotation, "query": "deploys"}}
    assert http.post("/grafana/annotations", json=bad).status_code == 400


def test_grafana_and_rest_give_the_same_numbers(world: World) -> None:
    """One engine: the Grafana panel and /query answer the same buckets with the same values."""
    http = _client(world)
    rest = http.get(
        "/v1/metrics/revenue/query",
        params={"start": str(world.start), "end": str(world.end), "step": "1h", "by": "country"},
    ).json()
    target = {"target": "revenue", "payload": {"group_by": "country"}}
    panel = http.post("/grafana/query", json=_query(world, [target], intervalMs=HOUR)).json()
    from_rest = {
        (g["dims"]["country"], p["start"]): p["value"] for g in rest["groups"] for p in g["points"]
    }
    from_panel = {
        (s["target"].split('"')[1], format_instant(ts)): v
        for s in panel
        for v, ts in s["datapoints"]
    }
    assert from_panel == from_rest


def test_the_generated_dashboard_runs_against_the_datasource(world: World) -> None:
    """Every panel target and variable of `riffle grafana dashboards` answers, with variables
    at "All" (the dashboard's allValue) and annotations sent through /query."""
    http = _client(world)
    board = json.loads(as_json(spec_dashboard(world.app.state.services.spec)))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            answer = http.post("/grafana/variable", json={"payload": variable["query"]["query"]})
            assert answer.status_code == 200 and answer.json(), variable
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            payload = {k: ALL for k in target["payload"]}  # $dimension at All
            body = _query(world, [{**target, "payload": payload}])
            answer = http.post("/grafana/query", json=body)
            assert answer.status_code == 200, (panel["title"], answer.text)
            assert answer.json()[0]["datapoints"], panel["title"]
    for note in board["annotations"]["list"]:
        body = _query(world, [note["target"]])
        [table] = http.post("/grafana/query", json=body).json()
        assert [c["text"] for c in table["columns"]] == ["time", "timeEnd", "title", "text", "tags"]
        assert table["rows"], note["name"]
    alerts = http.post("/grafana/query", json=_query(world, [{"target": "@alerts high_revenue"}]))
    assert [row[4] for row in alerts.json()[0]["rows"]] == [
        "alert,high_revenue,firing,page",
        "alert,high_revenue,normal,page",
    ]
