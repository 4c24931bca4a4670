"""`kill -9` of the whole dataflow while it writes to BigQuery: readers see every window once.

`riffle run --recovery-dir` writes to the BigQuery emulator through the
fault proxy of :mod:`tests.fault_proxy`. Each kill lands while an insertAll
request is in flight (the proxy holds it, then lets it land after the
process died: a write nobody acknowledged). The restarted flow resumes from
its snapshot and rewrites what followed. What readers see — the
``metric_windows`` view — must hold every window of an independent DuckDB
computation over the raw events (:func:`tests.scenario.expected_windows`),
with exactly its values and no key twice.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from riffle.config.settings import Settings
from riffle.dataflows.recovery import init_recovery
from riffle.sinks.warehouse.bigquery import BigQueryWarehouse
from riffle.stack import free_port
from tests.bq_support import Emulator
from tests.fault_proxy import FaultProxy, start_proxy
from tests.integration.flow_support import (
    assert_matches,
    assert_sketches_match,
    closed_expectation,
    closed_sketches,
    kill,
    produce,
    start_flow,
    wait_for,
    warehouse_rows,
)
from tests.scenario import closers, scenario

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def proxy(bq_emulator: Emulator) -> Iterator[FaultProxy]:
    running = start_proxy(bq_emulator.endpoint)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def on_bigquery(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    bq_emulator: Emulator,
    proxy: FaultProxy,
) -> Settings:
    settings = settings_factory(
        warehouse=f"bigquery://{bq_emulator.project}/k_{uuid.uuid4().hex[:12]}",
        bigquery_endpoint=proxy.endpoint,
        lateness_seconds=10,
        idle_seconds=120,  # no wall-clock closing: the backlog decides everything
        partial_interval_seconds=0.2,
        snapshot_seconds=0.5,
        warehouse_batch_rows=100,  # many small requests: kills land between and inside them
        recovery_dir=tmp_path / "recovery",
        metrics_port=free_port(),
    )
    assert settings.recovery_dir is not None
    init_recovery(settings.recovery_dir, 1)
    return settings


def duplicated_keys(settings: Settings) -> list[tuple[object, ...]]:
    """Keys that show more than once in the view readers query."""
    project, dataset = settings.warehouse.removeprefix("bigquery://").split("/")
    warehouse = BigQueryWarehouse(project, dataset, endpoint=settings.bigquery_endpoint)
    sql = (
        f"SELECT tenant, metric, series_id, window_start, count(*) AS n "
        f"FROM `{warehouse.table_id('metric_windows')}` GROUP BY 1, 2, 3, 4 HAVING n > 1"
    )
    return [tuple(row.values()) for row in warehouse.client.query(sql).result()]


def raw_and_seen(settings: Settings) -> tuple[int, int]:
    project, dataset = settings.warehouse.removeprefix("bigquery://").split("/")
    warehouse = BigQueryWarehouse(project, dataset, endpoint=settings.bigquery_endpoint)
    counts = [
        next(iter(warehouse.client.query(f"SELECT count(*) FROM `{name}`").result()))[0]
        for name in (warehouse.table_id("metric_windows_raw"), warehouse.table_id("metric_windows"))
    ]
    return int(counts[0]), int(counts[1])


@pytest.mark.timeout(600)  # three kill rounds and a 240 s recovery bound exceed the default
def test_kill_9_mid_bigquery_write_then_recovery_loses_and_doubles_nothing(
    on_bigquery: Settings, proxy: FaultProxy, tmp_path: Path
) -> None:
    settings, log = on_bigquery, tmp_path / "flow.log"
    rng = random.Random(11)
    events = 12_000
    span = events * 100  # the scenario's events are ~100 ms of event time apart
    now = int(time.time() * 1000)
    base = now - now % 60_000 - span
    sent = scenario(seed=11, n=events, partitions=PARTITIONS, base=base, users=True)

    def stream() -> None:  # paced, so kills land while data is still arriving
        for start in range(0, len(sent), 1000):
            produce(settings, sent[start : start + 1000])
            time.sleep(0.2)

    producer = threading.Thread(target=stream)
    producer.start()
    mid_write = 0
    try:
        for _ in range(3):
            flow = start_flow(settings, log)
            time.sleep(rng.uniform(2.0, 5.0))
            proxy.arm("hold", path="/tables/metric_windows_raw/insertAll", count=1, delay=3.0)
            if proxy.holding.wait(60):  # an insert is in flight: kill the writer now
                mid_write += 1
            kill(flow)
            proxy.disarm()
    finally:
        producer.join()
    assert mid_write >= 2, (
        f"only {mid_write} kills landed mid-write; flow log:\n{log.read_text()[-2000:]}"
    )
    tail = closers(base + span + 3_600_000, PARTITIONS)
    produce(settings, tail)
    expected = closed_expectation(sent + tail, lateness_ms=10_000)
    sketched = closed_sketches(sent + tail, lateness_ms=10_000)
    keys = expected.keys() | sketched.keys()
    flow = start_flow(settings, log)
    try:
        wait_for(lambda: keys <= warehouse_rows(settings).keys(), 240, "the warehouse", log)
        assert_matches(warehouse_rows(settings), expected)
        assert_sketches_match(warehouse_rows(settings), sketched)
        assert duplicated_keys(settings) == []
        raw, seen = raw_and_seen(settings)
        # The held inserts landed after their writer died and were written again on
        # replay: duplicates are in the raw table, and only there.
        assert raw > seen >= len(expected)
    finally:
        kill(flow)
