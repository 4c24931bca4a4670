"""A rule added through the API takes effect in a running `riffle run`, and absence fires
after the whole stream stops (the wall-clock fallback of caught-up idle partitions); a
replay of the same topic by a second `riffle run` writes exactly the same transitions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.engines import open_warehouse
from tests.api_support import keyed_client
from tests.integration.flow_support import kill, start_flow, wait_for

pytestmark = pytest.mark.integration

SPEC = """
version: 1
event_types: {signup: {}}
dimensions: {country: {path: context.country}}
metrics:
  - name: signups
    events: [signup]
    aggregation: count
    dimensions: [country]
    window: 1s
"""


class Steady:
    """Produces signups from DE, stamped with the wall clock, until stopped."""

    def __init__(self, settings: Settings, per_second: int = 20) -> None:
        self.settings = settings
        self.pause = 1.0 / per_second
        self.stop = threading.Event()
        self.last_ts = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_servers, "linger.ms": 5})
        n = 0
        while not self.stop.is_set():
            ts = int(time.time() * 1000)
            event = {
                "event_id": f"e{n}",
                "type": "signup",
                "ts": ts,
                "props": {"channel": "ads"},
                "context": {"country": "DE"},
            }
            producer.produce(self.settings.events_topic, orjson.dumps(event), partition=0)
            producer.poll(0)
            self.last_ts, n = ts, n + 1
            time.sleep(self.pause)
        assert producer.flush(30) == 0


def _transitions(settings: Settings) -> list[dict[str, Any]]:
    return WarehouseAlerts(open_warehouse(settings)).history("demo", 0, 10**13, limit=10_000)


def test_api_rule_takes_effect_live_and_replays_identically(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    settings = settings_factory(
        spec=spec,
        events_topic=topic_factory(partitions=1, prefix="events"),
        lateness_seconds=1,
        idle_seconds=1,
        partial_interval_seconds=0.2,
        buckets=4,
        warehouse=f"duckdb:///{tmp_path / 'live.duckdb'}",
    )
    log = tmp_path / "flow.log"
    producer = Steady(settings)
    producer.thread.start()
    flow = start_flow(settings, log)
    admin = keyed_client(create_app(settings), "demo", ("read", "admin"))
    try:
        time.sleep(3)  # the flow is evaluating windows before the rules exist
        made = admin.post(
            "/v1/alerts/rules",
            json={"name": "busy", "kind": "threshold", "metric": "signups", "value": 0},
        )
        assert made.status_code == 201, made.text
        busy_from = made.json()["effective_from"]
        quiet = admin.post(
            "/v1/alerts/rules",
            json={"name": "quiet", "kind": "absence", "metric": "signups", "after": "3s"},
        )
        assert quiet.status_code == 201, quiet.text
        time.sleep(4)
        producer.stop.set()
        producer.thread.join(30)

        def fired(rule: str) -> bool:
            rows = _transitions(settings)
            return any(r["rule"] == rule and r["to_state"] == "firing" for r in rows)

        wait_for(lambda: fired("busy"), 60, "the API rule firing", log)
        wait_for(lambda: fired("quiet"), 60, "absence after the stream stopped", log)
    finally:
        kill(flow)
    live = _transitions(settings)
    [busy] = [r for r in live if r["rule"] == "busy"]  # every window breaches: it stays
    # The first window ending at or after the rule's effective_from, not an earlier one.
    assert busy["to_state"] == "firing"
    assert busy_from <= busy["at"] < busy_from + 1000
    [absent] = [r for r in live if r["rule"] == "quiet"]
    last_window_end = producer.last_ts // 1000 * 1000 + 1000
    assert absent["at"] == last_window_end + 3000

    replay = settings.model_copy(update={"warehouse": f"duckdb:///{tmp_path / 'replay.duckdb'}"})
    log2 = tmp_path / "replay.log"
    again = start_flow(replay, log2)
    try:
        wait_for(lambda: len(_transitions(replay)) >= len(live), 60, "the replay's alerts", log2)
        time.sleep(3)  # and nothing more comes
    finally:
        kill(again)
    assert sorted(r["transition_id"] for r in _transitions(replay)) == sorted(
        r["transition_id"] for r in live
    )
