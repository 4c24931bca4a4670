"""The spine end to end: Kafka → `riffle run` → Redis, DuckDB, dead letters and the API.

A known event set (boundary stamps, late and malformed events, four
partitions) is produced to a real Tansu broker; the real CLI runs the
dataflow in a subprocess; every store's answer is compared with an
expectation computed independently by SQL in DuckDB over the same events.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.sinks.topics.deadletters import read_dead_letters
from riffle.sinks.warehouse.dead_letters import LetterQuery, WarehouseDeadLetters
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.stack import free_port
from tests.integration.flow_support import (
    Expected,
    assert_matches,
    assert_sketches_match,
    closed_expectation,
    closed_sketches,
    cluster_ports,
    kill,
    produce,
    redis_finals,
    scrape,
    start_flow,
    wait_for,
    warehouse_rows,
)
from tests.scenario import Sent, closers, late_valid_count, scenario

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def spine(settings_factory: Callable[..., Settings]) -> tuple[Settings, list[Sent]]:
    """Settings for one run, and the events produced (scenario + one closer per partition)."""
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 10 * 60_000
    settings = settings_factory(
        lateness_seconds=10, idle_seconds=1, partial_interval_seconds=0.2, metrics_port=free_port()
    )
    sent = scenario(seed=11, n=3000, partitions=PARTITIONS, base=base, users=True)
    sent += closers(base + 3_600_000, PARTITIONS)
    produce(settings, sent)
    return settings, sent


def test_events_become_windows_everywhere(
    spine: tuple[Settings, list[Sent]], tmp_path: Path
) -> None:
    settings, sent = spine
    expected = closed_expectation(sent, lateness_ms=10_000)
    sketched = closed_sketches(sent, lateness_ms=10_000)
    log = tmp_path / "flow.log"
    flow = start_flow(settings, log)
    try:
        wait_for(
            lambda: (expected.keys() | sketched.keys()) <= redis_finals(settings).keys(),
            60,
            "final windows in Redis",
            log,
        )
        assert_matches(redis_finals(settings), expected)
        assert_sketches_match(redis_finals(settings), sketched)

        # Every final also lands in the warehouse (upserted, one row per window).
        wait_for(
            lambda: expected.keys() <= warehouse_rows(settings).keys(), 30, "warehouse rows", log
        )
        assert_matches(warehouse_rows(settings), expected)

        # Every rejected or late event is on the dead-letter topic with its bytes.
        letters = read_dead_letters(
            settings.kafka_servers, settings.deadletter_topic, range(PARTITIONS)
        )
        # An invalid event can also be late; then it is reported as late.
        invalid = Counter(s.raw for s in sent if not s.valid)
        late = [d for d in letters if d.failure_type == "late"]
        assert Counter(d.raw for d in letters) == invalid + Counter(
            d.raw for d in late if d.raw not in invalid
        )
        assert sum(1 for d in late if d.raw not in invalid) == late_valid_count(sent, 10_000)
        assert late and all(d.lateness_ms and d.lateness_ms > 0 for d in late)

        # ... and the same letters are rows of the warehouse's dead_letters table.
        table = WarehouseDeadLetters(open_warehouse(settings))

        def stored() -> set[str]:
            rows, _ = table.query(LetterQuery("demo", limit=100_000))
            return {row.letter_id for row in rows}

        wait_for(lambda: stored() == {d.letter_id for d in letters}, 30, "dead_letters rows", log)

        # in = ok + dead + late, scraped from the running process.
        seen = scrape(settings, "riffle_dataflow_events_in_total")
        outcomes = {
            o: scrape(settings, f'riffle_dataflow_events_total{{outcome="{o}"}}')
            for o in ("ok", "dead", "late")
        }
        assert seen == len(sent) == sum(outcomes.values())
        assert outcomes["late"] == len(late)

        # The API answers from the same data; with a tiny hot horizon it merges the warehouse.
        for horizon in (6 * 3600.0, 1.0):
            app = create_app(settings.model_copy(update={"hot_horizon_seconds": horizon}))
            key, _ = app.state.collect.keys.create("demo", ["read"])
            api = TestClient(app, headers={"Authorization": f"Bearer {key}"})
            check_api(api, expected)
    finally:
        kill(flow)

    # A restart without recovery reads the topic again and rewrites, never adds.
    restarted = int(time.time() * 1000)
    flow = start_flow(settings, log)
    try:

        def rewritten() -> bool:
            finals = redis_finals(settings)
            return all(k in finals and finals[k].emitted_at >= restarted for k in expected)

        wait_for(rewritten, 60, "every final rewritten after the restart", log)
        assert_matches(redis_finals(settings), expected)
    finally:
        kill(flow)


def check_api(api: TestClient, expected: Expected) -> None:
    starts = sorted({start for (_m, _d, start) in expected})
    params = {"start": str(starts[0]), "end": str(starts[-1] + 60_000)}
    body = api.get("/v1/metrics/page_views/series", params=params).json()
    got = {
        (tuple(sorted(s["dims"].items())), p["window_start"]): p
        for s in body["series"]
        for p in s["points"]
    }
    for (metric, dims, start), (count, *_rest) in expected.items():
        if metric != "page_views":
            continue
        point = got[(dims, _iso(start))]
        assert point["value"] == count and point["is_final"], (dims, start)

    # avg over merged series is sum/count of the parts, exactly.
    merged = api.get("/v1/metrics/avg_order_value/series", params={**params, "group_by": ""}).json()
    totals: dict[int, list[float]] = {}
    for (metric, _dims, start), (count, total, *_r) in expected.items():
        if metric == "avg_order_value":
            acc = totals.setdefault(start, [0.0, 0.0])
            acc[0] += count
            acc[1] += total
    points = {p["window_start"]: p for s in merged["series"] for p in s["points"]}
    for start, (count, total) in totals.items():
        assert points[_iso(start)]["value"] == pytest.approx(total / count)
        assert points[_iso(start)]["count"] == count


def _iso(millis: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_two_processes_give_the_same_windows(
    spine: tuple[Settings, list[Sent]], tmp_path: Path
) -> None:
    """A two-process cluster over the four partitions stores exactly the single-process result."""
    settings, sent = spine
    metrics, hosts = cluster_ports(2)  # process i serves metrics_port + i
    settings = settings.model_copy(update={"metrics_port": metrics})
    expected = closed_expectation(sent, lateness_ms=10_000)
    sketched = closed_sketches(sent, lateness_ms=10_000)
    log = tmp_path / "flow.log"
    flows = [start_flow(settings, log, "-i", str(i), "-a", hosts) for i in range(2)]
    try:
        keys = expected.keys() | sketched.keys()
        wait_for(
            lambda: keys <= redis_finals(settings).keys(),
            120,
            "finals",
            log,
            lambda: f"missing {sorted(keys - redis_finals(settings).keys())[:3]}",
        )
        assert_matches(redis_finals(settings), expected)
        assert_sketches_match(redis_finals(settings), sketched)
        wait_for(lambda: expected.keys() <= warehouse_rows(settings).keys(), 30, "warehouse", log)
        assert_matches(warehouse_rows(settings), expected)
        per_process = [
            scrape(
                settings.model_copy(update={"metrics_port": settings.metrics_port + i}),
                "riffle_dataflow_events_in_total",
            )
            for i in range(2)
        ]
        # Every event read once in the cluster (which process reads a partition
        # follows Bytewax's key routing, so one may read them all).
        assert sum(per_process) == len(sent)
    finally:
        for flow in flows:
            kill(flow)
