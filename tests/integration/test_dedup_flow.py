"""Exactly once from the producer to the window: copies on Kafka never reach a window.

The scenario is produced to a real Tansu broker with 10 % of its messages
delivered twice; the real CLI runs the dataflow; the final windows in Redis
and the warehouse (DuckDB; BigQuery's emulator in the soak run) must equal
the SQL expectation of the clean stream. Then every
event is delivered once more while the flow runs: the windows stay the same
and every copy is counted as a duplicate (not as late, not twice).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from riffle.config.settings import Settings
from riffle.stack import free_port
from tests.integration.flow_support import (
    assert_matches,
    assert_sketches_match,
    closed_expectation,
    closed_sketches,
    kill,
    lean_spec,
    produce,
    redis_finals,
    scrape,
    start_flow,
    wait_for,
    warehouse_rows,
)
from tests.scenario import closers, scenario, with_copies
from tests.warehouse_fixtures import WarehouseTarget

pytestmark = pytest.mark.integration

PARTITIONS = 4
OUTCOMES = ("ok", "dead", "late", "duplicate")


def _outcomes(settings: Settings) -> dict[str, float]:
    return {o: scrape(settings, f'riffle_dataflow_events_total{{outcome="{o}"}}') for o in OUTCOMES}


def _events_in(settings: Settings) -> float:
    try:
        return scrape(settings, "riffle_dataflow_events_in_total")
    except OSError:  # not serving yet
        return -1.0


@pytest.mark.parametrize(
    "warehouse_target",
    ["duckdb", pytest.param("bigquery", marks=pytest.mark.soak)],  # the emulator: ~+20 s
    indirect=True,
)
def test_copies_and_a_full_redelivery_leave_the_clean_windows(
    settings_factory: Callable[..., Settings], tmp_path: Path, warehouse_target: WarehouseTarget
) -> None:
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 10 * 60_000
    settings = settings_factory(
        lateness_seconds=10,
        idle_seconds=1,
        partial_interval_seconds=0.2,
        snapshot_seconds=1,  # epochs of 1 s: the warehouse writes at their ends
        metrics_port=free_port(),
        spec=lean_spec(tmp_path),  # windows are the point: no models, predictions or alerts
        warehouse=warehouse_target.url,
        bigquery_endpoint=warehouse_target.endpoint,
    )
    sent = scenario(seed=23, n=2000, partitions=PARTITIONS, base=base, users=True)
    tail = closers(base + 3_600_000, PARTITIONS)
    delivered = with_copies(sent, 0.1, seed=23) + tail
    produce(settings, delivered)
    expected = closed_expectation(sent + tail, lateness_ms=10_000)
    sketched = closed_sketches(sent + tail, lateness_ms=10_000)
    keys = expected.keys() | sketched.keys()
    log = tmp_path / "flow.log"
    flow = start_flow(settings, log)
    try:
        wait_for(lambda: keys <= redis_finals(settings).keys(), 60, "finals in Redis", log)
        wait_for(lambda: _events_in(settings) == len(delivered), 30, "every message read", log)
        assert_matches(redis_finals(settings), expected)
        assert_sketches_match(redis_finals(settings), sketched)
        wait_for(lambda: expected.keys() <= warehouse_rows(settings).keys(), 30, "warehouse", log)
        assert_matches(warehouse_rows(settings), expected)
        assert_sketches_match(warehouse_rows(settings), sketched)
        first = _outcomes(settings)
        assert sum(first.values()) == len(delivered)
        valid_copies = sum(s.valid for s in delivered[: len(delivered) - len(tail)]) - sum(
            s.valid for s in sent
        )
        assert first["duplicate"] >= valid_copies > 0

        # Everything once more, hours behind the watermark: duplicates, not late events.
        produce(settings, sent)
        total = len(delivered) + len(sent)
        wait_for(lambda: _events_in(settings) == total, 60, "the redelivery read", log)
        again = _outcomes(settings)
        assert sum(again.values()) == total
        assert (again["ok"], again["late"]) == (first["ok"], first["late"])
        assert again["duplicate"] - first["duplicate"] >= sum(s.valid for s in sent)
        time.sleep(1)  # a partial interval and more: any stray emission would have landed
        assert_matches(redis_finals(settings), expected)
        assert_matches(warehouse_rows(settings), expected)
    finally:
        kill(flow)
