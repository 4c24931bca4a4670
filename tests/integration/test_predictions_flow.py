"""Predictions through the whole flow (Bytewax) into DuckDB and Redis, served by the API.

The demo stream, split into two partitions by user as the demo producer
keys it, goes through ``build_flow`` with the demo spec; the prediction
stage's records land in both stores and ``/v1/predictions/session/{id}``
answers with the probability and a model that beats the base rate. The same
events polled in different sizes give the same resolutions (event time, not
arrival).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import redis
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.logic import EntityUpdate
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.predictions import PredictionStoreSink, PredictionTelemetry
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.models.classifier import ClassifierStats
from riffle.operators.models.entities import ModelStatsRecord, PredictionOut, PredictionRecord
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sinks.redis.predictions import RedisPredictionStore
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.predictions import PredictionStore
from riffle.sources.demo import generate
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.scenario import Sent
from tests.unit.test_metrics_flow import polls

SPEC_PATH = Path("config/demo.yaml")
# The demo spec with a 1-minute horizon, so a short stream resolves more sessions.
SPEC_TEXT = SPEC_PATH.read_text().replace("    horizon: 2m\n", "    horizon: 1m\n")
SPEC = parse_spec(SPEC_TEXT)
BASE = 1_700_000_000_000
EVENTS = 40_000


def _sent() -> list[Sent]:
    out = []
    for raw in generate(EVENTS, seed=2, start_ms=BASE):
        try:
            user = str(orjson.loads(raw)["context"]["user_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            user = "x"
        out.append(Sent(sum(user.encode()) % 2, raw, True))
    return out


def _run(
    sent: list[Sent],
    poll: int,
    sink: PredictionStoreSink | None,
    registry: CollectorRegistry,
    *,
    abort_after: int | None = None,
    recovery: Path | None = None,
    got: list[PredictionOut] | None = None,
) -> list[PredictionOut]:
    got = [] if got is None else got
    items: list[Any] = list(polls(sent, poll))
    if abort_after is not None:
        items.insert(abort_after, TestingSource.ABORT())
    windows: list[WindowResult] = []
    dead: list[DeadLetter] = []
    outputs = FlowOutputs(
        TestingSink(windows),
        None,
        TestingSink(dead),
        predictions=sink if sink is not None else TestingSink(got),
    )
    flow = build_flow(
        SPEC,
        Settings(
            lateness_seconds=10, buckets=2, partial_interval_seconds=0.05, default_tenant="t1"
        ),
        source=TestingSource(items),
        partitions=["events/0", "events/1"],
        outputs=outputs,
        telemetry=FlowTelemetry(registry),
    )
    # The stage's own metrics go to the default registry; the flow's to ``registry``.
    if recovery is None:
        run_main(flow)
    else:
        run_main(
            flow,
            epoch_interval=timedelta(milliseconds=0),
            recovery_config=RecoveryConfig(str(recovery)),
        )
    return got


def _resolutions(out: list[PredictionOut]) -> list[tuple[object, ...]]:
    return sorted(
        (r.entity_id, r.ts, r.status, round(r.probability, 12), r.learned)
        for r in out
        if isinstance(r, PredictionRecord) and r.status != "open"
    )


def test_resolutions_do_not_depend_on_poll_size() -> None:
    sent = _sent()[:30_000]
    small = _run(sent, 100, None, CollectorRegistry())
    large = _run(sent, 900, None, CollectorRegistry())
    assert _resolutions(small) == _resolutions(large)
    assert len(_resolutions(small)) > 200


def test_an_aborted_run_resumed_from_its_snapshot_resolves_as_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    sent = _sent()[:20_000]
    clean = _run(sent, 200, None, CollectorRegistry())
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    resumed: list[PredictionOut] = []
    # The ABORT marker stops the first run mid-stream, as a crash would.
    _run(sent, 200, None, CollectorRegistry(), abort_after=60, recovery=recovery, got=resumed)
    before = len(resumed)
    assert before > 0
    _run(sent, 200, None, CollectorRegistry(), recovery=recovery, got=resumed)
    assert len(resumed) > before
    # It resumed from the snapshot rather than from the start.
    assert len(resumed) - before < len(clean)
    # Sinks upsert: a resolution emitted again after the resume is the same row.
    assert sorted(set(_resolutions(resumed))) == _resolutions(clean)
    assert len(_resolutions(clean)) > 100


def test_predictions_land_in_both_stores_and_the_api_serves_them(
    tmp_path: Path, redis_url: RedisTarget
) -> None:
    db = tmp_path / "warehouse.duckdb"
    prefix = f"{redis_url.prefix}-pred"
    ttl = 30 * 86_400
    sink = PredictionStoreSink(db, redis=(redis_url.url, prefix, ttl))
    _run(_sent(), 500, sink, CollectorRegistry())

    warm = PredictionStore(DuckDBWarehouse(db))
    hot = RedisPredictionStore(redis.Redis.from_url(redis_url.url), prefix, ttl)
    tenant = "t1"
    [model] = warm.models(tenant)
    assert hot.models(tenant, "session") == [model]
    # The online accuracy beats always saying the base rate.
    assert model["learned"] > 1000
    assert model["logloss"] < model["base_logloss"]
    assert model["roc_auc"] > 0.7
    assert model["accuracy"] >= model["base_accuracy"]

    rows = DuckDBWarehouse(db)._run(
        lambda con: con.execute(
            "SELECT entity_id, status, probability FROM predictions ORDER BY entity_id"
        ).fetchall(),
        read_only=True,
    )
    statuses = {status for _, status, _ in rows}
    assert statuses == {"open", "positive", "negative"}
    bought = next(eid for eid, status, _ in rows if status == "positive")
    still_open = next(eid for eid, status, _ in rows if status == "open")
    assert hot.entity(tenant, "session", bought) == warm.entity(tenant, "session", bought)

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC_TEXT.replace("hot: 2d", "hot: 30d"))
    settings = Settings(
        spec=spec_path,
        warehouse=f"duckdb:///{db}",
        redis_url=redis_url.url,
        redis_prefix=prefix,
    )
    http = keyed_client(create_app(settings, CollectorRegistry()), tenant)
    body = http.get(f"/v1/predictions/session/{still_open}").json()
    assert body["source"] == "hot"
    [pred] = body["predictions"]
    assert pred["prediction"] == "purchase_propensity" and pred["status"] == "open"
    assert 0 < pred["probability"] < 1
    assert pred["model"]["beats_baseline"] is True
    assert 0 < pred["model"]["base_rate"] < 0.3
    warm_body = http.get(f"/v1/predictions/session/{bought}", params={"source": "warehouse"}).json()
    assert warm_body["source"] == "warehouse"
    assert warm_body["predictions"][0]["status"] == "positive"
    assert http.get("/v1/predictions/session/nobody").status_code == 404
    missing = http.get("/v1/predictions/user/u1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_entity_type"
    # Another tenant sees nothing of this one's entities.
    other = keyed_client(create_app(settings, CollectorRegistry()), "someone-else")
    assert other.get(f"/v1/predictions/session/{still_open}").status_code == 404


def test_prediction_metrics_count_resolutions() -> None:
    registry = CollectorRegistry()
    telemetry = PredictionTelemetry(registry)
    stats = ClassifierStats(10, 2, 0.3, 0.5, 0.8, 0.9, 0.8)
    stats_record = ModelStatsRecord("t", "p", "session", 5, stats, 4, 0)
    positive = PredictionRecord("t", "p", "session", "s", 1, 0.3, "positive", 3, 0)
    telemetry.record("p", EntityUpdate("events/0", 1, [], 2), [positive, stats_record])
    sample = registry.get_sample_value
    resolved = {"prediction": "p", "outcome": "positive"}
    assert sample("riffle_predictions_resolved_total", resolved) == 1
    assert sample("riffle_predictions_late_total", {"prediction": "p"}) == 2
    assert sample("riffle_predictions_roc_auc", {"prediction": "p"}) == 0.8
    assert sample("riffle_predictions_logloss", {"prediction": "p", "model": "base_rate"}) == 0.5
