"""Tenant alert rules with real Redis: the versioned log, the CRUD API (validation with
field paths, read-only spec rules, tenant scope), the simulator on every rule kind over
stored windows, scores and forecasts, and the alert stage applying rule changes at their
event time — the same transitions in every run mode and on replay."""

from __future__ import annotations

import pickle
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.alert_logic import AlertLogic, RuleFeed, compile_rules
from riffle.dataflows.alerts import alert_stage
from riffle.operators.alerts.observations import Observation
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.models.base import AnomalyScore, Forecast
from riffle.operators.models.forecast import ForecastSkill
from riffle.operators.models.series import AnomalyRecord, ForecastRecord
from riffle.operators.records import WindowResult
from riffle.sinks.redis.rules import AlertRuleStore, RuleExistsError, RuleMissingError
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.model_results import ModelStore
from riffle.stack import free_port
from tests.api_support import keyed_client
from tests.conftest import RedisTarget

SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - name: views
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 1s
  - name: minutes
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 1m
    anomaly: {}
    forecast: {}
alerts:
  - {name: spec_rule, kind: threshold, metric: views, value: 1000000}
"""


@pytest.fixture
def store(redis_url: RedisTarget) -> Iterator[AlertRuleStore]:
    client = redis.Redis.from_url(redis_url.url)
    yield AlertRuleStore(client, f"{redis_url.prefix}-rules-{uuid.uuid4().hex[:6]}")
    client.close()


def test_the_log_is_versioned_stamped_and_complete_up_to_its_read(store: AlertRuleStore) -> None:
    rule = {"name": "a", "kind": "threshold", "metric": "views", "value": 1}
    first = store.write("t1", "a", rule, "create")
    with pytest.raises(RuleExistsError):
        store.write("t1", "a", rule, "create")
    with pytest.raises(RuleMissingError):
        store.write("t1", "b", rule, "update")
    through, entries = store.read()
    assert [e.seq for e in entries] == [1] and entries[0] == first
    assert through >= first.effective_from
    second = store.write("t1", "a", rule | {"value": 2}, "update")
    # Written after the read: stamped no earlier than the time that read was complete to.
    assert second.seq == 2 and second.effective_from >= through
    store.write("t2", "a", rule, "create")
    store.write("t1", "a", None, "delete")
    assert store.get("t1", "a") is None and store.current("t1") == []
    assert [e.name for e in store.current("t2")] == ["a"]
    _, tail = store.read(2)
    assert [(e.seq, e.tenant, e.rule is None) for e in tail] == [(3, "t2", False), (4, "t1", True)]
    times = [e.effective_from for e in store.read()[1]]
    assert times == sorted(times)


def _settings(tmp_path: Path, redis_url: RedisTarget) -> Settings:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    return Settings(
        spec=spec_path,
        warehouse=f"duckdb:///{tmp_path / 'w.duckdb'}",
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-api-{uuid.uuid4().hex[:6]}",
    )


def test_rules_crud_through_the_api(tmp_path: Path, redis_url: RedisTarget) -> None:
    app = create_app(_settings(tmp_path, redis_url))
    admin = keyed_client(app, "t1", ("read", "admin"))
    reader = keyed_client(app, "t1")
    other = keyed_client(app, "t2", ("read", "admin"))
    rule = {"name": "busy", "kind": "threshold", "metric": "views", "value": 5, "for": "3s"}

    assert reader.post("/v1/alerts/rules", json=rule).status_code == 403
    made = admin.post("/v1/alerts/rules", json=rule)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["source"], body["version"], body["for"]) == ("api", 1, "3s")
    assert body["effective_from"] > 0
    assert admin.post("/v1/alerts/rules", json=rule).status_code == 409

    bad = admin.post(
        "/v1/alerts/rules",
        json={**rule, "name": "x", "op": "over", "group_by": ["page"], "for": "soon"},
    )
    assert bad.status_code == 422
    fields = {p["field"] for p in bad.json()["problems"]}
    assert {"op", "for"} <= fields and bad.json()["error"]["code"] == "invalid_rule"
    bad = admin.post("/v1/alerts/rules", json={**rule, "name": "x", "group_by": ["page"]})
    assert [p["field"] for p in bad.json()["problems"]] == ["group_by.0"]
    bad = admin.post("/v1/alerts/rules", json={**rule, "name": "x", "kind": "anomaly"})
    assert bad.status_code == 422 and "above" in bad.text
    bad = admin.post("/v1/alerts/rules", json={"name": "y", "kind": "forecast", "metric": "views"})
    assert bad.json()["problems"] == [
        {"field": "metric", "message": "metric 'views' has no forecast: block"}
    ]

    # Spec rules are listed and read-only.
    listed = reader.get("/v1/alerts/rules").json()["rules"]
    assert [(r["name"], r["source"]) for r in listed] == [("spec_rule", "spec"), ("busy", "api")]
    assert admin.put("/v1/alerts/rules/spec_rule", json=rule).status_code == 409
    assert admin.delete("/v1/alerts/rules/spec_rule").status_code == 409
    assert admin.post("/v1/alerts/rules", json={**rule, "name": "spec_rule"}).status_code == 409

    # A listed rule goes back in as is; the version grows.
    changed = admin.put("/v1/alerts/rules/busy", json=listed[1] | {"value": 9})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.json()["value"]) == (2, 9.0)
    assert changed.json()["effective_from"] >= body["effective_from"]
    assert admin.put("/v1/alerts/rules/busy", json={**rule, "name": "z"}).status_code == 422
    assert admin.put("/v1/alerts/rules/nope", json={**rule, "name": "nope"}).status_code == 404
    assert reader.get("/v1/alerts/rules/busy").json()["value"] == 9.0

    # Another tenant sees none of it.
    assert [r["source"] for r in other.get("/v1/alerts/rules").json()["rules"]] == ["spec"]
    assert other.get("/v1/alerts/rules/busy").status_code == 404
    assert other.delete("/v1/alerts/rules/busy").status_code == 404

    assert admin.delete("/v1/alerts/rules/busy").status_code == 204
    assert admin.delete("/v1/alerts/rules/busy").status_code == 404
    assert reader.get("/v1/alerts/rules/busy").status_code == 404


MIN = 60_000


def _minute(country: str, minute: int, value: float) -> WindowResult:
    start = minute * MIN
    return WindowResult(
        "t1",
        "minutes",
        (("country", country),),
        start,
        start + MIN,
        int(value),
        value,
        value,
        value,
        value,
        True,
        1,
    )


def test_simulate_covers_every_rule_kind(tmp_path: Path, redis_url: RedisTarget) -> None:
    settings = _settings(tmp_path, redis_url)
    warehouse = DuckDBWarehouse(settings.duckdb_path)
    warehouse.init()
    values = [10.0] * 35
    values[20] = 80.0
    warehouse.upsert_windows([_minute("de", m, v) for m, v in enumerate(values)])
    records: list[Any] = []
    for m, v in enumerate(values):
        score = 0.95 if v > 50 else 0.1
        result = AnomalyScore(
            m * MIN, v, score, "anomaly" if score > 0.9 else "normal", 10.0, 8.0, 12.0, 0.0, ""
        )
        records.append(AnomalyRecord("t1", "minutes", (("country", "de"),), m * MIN, "x", result))
        points = (((m + 1) * MIN, 10.0, 8.0, 12.0),)
        skill = ForecastSkill(m, 1.0, 1.0, 1.0, 1.0, 0.9)
        records.append(
            ForecastRecord(
                "t1",
                "minutes",
                (("country", "de"),),
                m * MIN,
                Forecast(m * MIN, 0.9, points),
                skill,
            )
        )
    ModelStore(warehouse).write(records)
    client = keyed_client(create_app(settings), "t1", ("read", "admin"))

    def simulate(rule: dict[str, Any]) -> list[tuple[int, str]]:
        reply = client.post(
            "/v1/alerts/rules/simulate",
            json={"rule": rule, "start": str(5 * MIN), "end": str(40 * MIN)},
        )
        assert reply.status_code == 200, reply.text
        return [(t["at"] // MIN, t["to_state"]) for t in reply.json()["transitions"]]

    base = {"name": "s", "metric": "minutes"}
    # The spike ends at minute 21 (the window [20, 21)).
    assert simulate(base | {"kind": "threshold", "value": 50}) == [(21, "firing"), (22, "normal")]
    assert simulate(base | {"kind": "anomaly", "above": 0.9}) == [(21, "firing"), (22, "normal")]
    assert simulate(base | {"kind": "forecast", "min_history": 3}) == [
        (21, "firing"),
        (22, "normal"),
    ]
    # Against the same window 10 minutes earlier: +700 % at 21, and -87.5 % ten minutes on.
    period = base | {"kind": "change", "mode": "percent", "value": 100, "period": "10m"}
    assert simulate(period) == [(21, "firing"), (22, "normal")]
    assert simulate(period | {"op": "lt", "value": -50}) == [(31, "firing"), (32, "normal")]
    # The data stops after the window [34, 35); the range's end judges the absence.
    assert simulate(base | {"kind": "absence", "after": "3m"}) == [(38, "firing")]

    # A stored rule by name; an unknown one; neither.
    client.post("/v1/alerts/rules", json=base | {"name": "mine", "kind": "threshold", "value": 50})
    by_name = client.post("/v1/alerts/rules/simulate", json={"name": "mine", "start": "0"})
    assert by_name.json()["fired"] == 1
    assert client.post("/v1/alerts/rules/simulate", json={"name": "nope"}).status_code == 404
    assert client.post("/v1/alerts/rules/simulate", json={}).status_code == 422


# ---- the stage applies rule changes at their event time ---------------------------------


def _second(country: str, start: int, value: int) -> WindowResult:
    v = float(value)
    return WindowResult(
        "t1", "views", (("country", country),), start, start + 1000, value, v, v, v, v, True, 1
    )


def _changes(store: AlertRuleStore) -> dict[str, int]:
    """A rule kept through an update (A), one whose group_by changes (B), A deleted.

    Each group of changes is stamped 2.5 s after the one before without waiting: a
    reader that judged windows up to then moves the log's clock there, and a change
    is never stamped before it (:meth:`AlertRuleStore.read`)."""
    hot = {"name": "hot", "kind": "threshold", "metric": "views", "value": 100}
    total = {"name": "total", "kind": "threshold", "metric": "views", "value": 100, "group_by": []}
    eff = {"a": store.write("t1", "hot", hot, "create").effective_from}
    eff["b"] = store.write("t1", "total", total, "create").effective_from
    store.read(0, eff["b"] + 2500)
    eff["a2"] = store.write("t1", "hot", hot | {"severity": "critical"}, "update").effective_from
    eff["b2"] = store.write(
        "t1", "total", total | {"group_by": ["country"]}, "update"
    ).effective_from
    store.read(0, eff["b2"] + 2500)
    eff["a3"] = store.write("t1", "hot", None, "delete").effective_from
    assert eff["a2"] - eff["b"] >= 2500 and eff["a3"] - eff["b2"] >= 2500
    return eff


def _windows(eff: dict[str, int]) -> list[WindowResult]:
    first = eff["a"] // 1000 * 1000 - 3000
    last = eff["a3"] // 1000 * 1000 + 3000
    return [
        _second(country, start, 500)
        for start in range(first, last, 1000)
        for country in ("de", "fr")
    ]


def _run(store: AlertRuleStore, windows: list[WindowResult], mode: str) -> list[AlertTransition]:
    spec = parse_spec(SPEC)
    got: list[AlertTransition] = []
    flow = Dataflow("alert_rules_test")
    results = op.input("in", flow, TestingSource(windows, batch_size=5))
    out = alert_stage(results, spec, shards=4, sink=TestingSink([]), rule_log=store)
    assert out is not None
    op.output("collect", out, TestingSink(got))
    if mode == "single":
        run_main(flow, epoch_interval=timedelta(0))
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    return got


def test_rule_changes_apply_at_their_event_time_in_every_mode(store: AlertRuleStore) -> None:
    eff = _changes(store)
    windows = _windows(eff)
    got = _run(store, windows, "single")
    keys = {(t.rule, dict(t.labels).get("country", ""), t.to_state, t.at) for t in got}

    def first_end(after: int) -> int:
        return min(w.window_end for w in windows if w.window_end >= after)

    hot = {k for k in keys if k[0] == "hot"}
    assert hot == {
        ("hot", c, s, at)
        for c in ("de", "fr")
        for s, at in (("firing", first_end(eff["a"])), ("normal", eff["a3"]))
    }, "the update kept the instances; the delete resolved them at its effective_from"
    assert all(
        dict(t.labels)["severity"] == ("critical" if t.at >= eff["a2"] else "warning")
        for t in got
        if t.rule == "hot"
    )
    total = sorted(k for k in keys if k[0] == "total")
    merged = [k for k in total if k[1] == ""]
    assert [k[2] for k in merged] == ["firing", "normal"] and merged[1][3] == eff["b2"]
    assert merged[0][3] >= eff["b"] and merged[0][2] == "firing"
    assert {k for k in total if k[1]} == {
        ("total", c, "firing", first_end(eff["b2"])) for c in ("de", "fr")
    }
    assert all(t.at >= eff["a"] for t in got)

    again = _run(store, windows, "single")
    assert [t.transition_id for t in again] == [t.transition_id for t in got]
    two = _run(store, windows, "two_workers")
    assert sorted(t.transition_id for t in two) == sorted(t.transition_id for t in got)


def test_a_resumed_shard_neither_reapplies_nor_skips_a_rule_change(
    store: AlertRuleStore,
) -> None:
    spec = parse_spec(SPEC)
    made = store.write(
        "t1", "hot", {"name": "hot", "kind": "threshold", "metric": "views", "value": 100}, "create"
    )
    logic = AlertLogic(compile_rules(spec), None, feed=RuleFeed(store, spec, default_lateness_ms=0))
    end = (made.effective_from // 1000 + 1) * 1000
    window = Observation("t1", "views", (("country", "de"),), end, 500.0, count=500)
    [fired] = logic.on_batch([("t1/hot", window)])[0]
    assert (fired.to_state, fired.at, logic.snapshot().applied) == ("firing", end, 1)
    state = pickle.loads(pickle.dumps(logic.snapshot()))
    gone = store.write("t1", "hot", None, "delete")

    resumed = AlertLogic(
        compile_rules(spec), state, feed=RuleFeed(store, spec, default_lateness_ms=0)
    )
    assert "t1/hot" in resumed.evaluators  # rebuilt from the log's applied entries
    assert resumed.on_batch([("t1/hot", window)])[0] == []  # the same window: nothing again
    later = replace(window, window_end=gone.effective_from + 2000)
    out = resumed.on_batch([("t1/hot", later)])[0]
    assert [(t.from_state, t.to_state, t.at) for t in out] == [
        ("firing", "normal", gone.effective_from)
    ]
    assert resumed.snapshot().applied == 2 and "t1/hot" not in resumed.evaluators


STAGE_SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - name: minutes
    events: [view]
    aggregation: count
    dimensions: [country]
    window: 1m
    forecast: {}
alerts:
  - {name: early, kind: threshold, metric: minutes, value: 50, evaluate: partial}
  - {name: off_forecast, kind: forecast, metric: minutes, min_history: 2}
"""


def test_partials_and_forecasts_reach_their_rules_through_the_stage() -> None:
    spec = parse_spec(STAGE_SPEC)
    de = (("country", "de"),)
    items: list[WindowResult] = []
    records: list[ForecastRecord] = []
    for m in range(8):
        value = 80.0 if m == 5 else 10.0
        if m == 5:  # the spike's partials: 30 (no breach), then 60 (raises early)
            items += [replace(_minute("de", m, p), is_final=False) for p in (30.0, 60.0)]
        items.append(_minute("de", m, value))
        skill = ForecastSkill(m, 1.0, 1.0, 1.0, 1.0, 0.9)
        points = (((m + 1) * MIN, 10.0, 8.0, 12.0),)
        forecast = Forecast(m * MIN, 0.9, points)
        records.append(ForecastRecord("t1", "minutes", de, m * MIN, forecast, skill))
    got: list[AlertTransition] = []
    flow = Dataflow("partials_forecasts")
    results = op.input("in", flow, TestingSource(items, batch_size=2))
    scores = op.input("models", flow, TestingSource(records, batch_size=3))
    out = alert_stage(results, spec, shards=4, sink=TestingSink([]), scores=scores)
    assert out is not None
    op.output("collect", out, TestingSink(got))
    run_main(flow, epoch_interval=timedelta(0))
    keys = sorted((t.rule, t.at // MIN, t.from_state, t.to_state) for t in got)
    assert keys == [
        ("early", 6, "normal", "firing"),  # raised by the partial; the final confirms
        ("early", 7, "firing", "normal"),
        ("off_forecast", 6, "normal", "firing"),  # 80 is above the interval [8, 12]
        ("off_forecast", 7, "firing", "normal"),
    ]
    raised = next(t for t in got if t.rule == "early" and t.to_state == "firing")
    assert raised.value == 60.0  # the partial's value: it came before the final


def test_the_dataflow_side_read_retries_then_gives_up() -> None:
    dead = AlertRuleStore(
        redis.Redis(port=free_port(), socket_connect_timeout=0.2), "p", read_give_up_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        dead.read()
    assert time.monotonic() - started >= 1.0
