"""Snapshot duration and age, and state size by stage (``riffle_dataflow_*``)."""

from __future__ import annotations

import pickle
import time

from prometheus_client import CollectorRegistry

from riffle.dataflows.logic import BucketLogic, BucketUpdate
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.windows import WindowRule
from tests.scenario import scenario
from tests.unit.test_metrics_flow import run

MIN = 60_000
T0 = 1_767_225_600_000
RULES = {"views": WindowRule("count"), "spend": WindowRule("sum", horizon_ms=10 * MIN)}


def test_snapshot_age_is_unknown_before_the_first_then_grows() -> None:
    registry = CollectorRegistry()
    telemetry = FlowTelemetry(registry, size_every_s=0)
    sample = registry.get_sample_value
    assert sample("riffle_dataflow_snapshot_age_seconds", {"stage": "ingest"}) == -1.0
    telemetry.snapshotted("ingest", "k", ("events/0", 1, 2, None), 0.002)
    first = sample("riffle_dataflow_snapshot_age_seconds", {"stage": "ingest"})
    assert first is not None and 0 <= first < 1
    time.sleep(0.05)
    later = sample("riffle_dataflow_snapshot_age_seconds", {"stage": "ingest"})
    assert later is not None and later >= first + 0.04
    assert sample("riffle_dataflow_snapshot_age_seconds", {"stage": "windows"}) == -1.0
    stamp = sample("riffle_dataflow_last_snapshot_timestamp_seconds", {"stage": "ingest"})
    assert stamp is not None and abs(stamp - time.time()) < 5
    labels = {"stage": "ingest"}
    assert sample("riffle_dataflow_snapshot_duration_seconds_count", labels) == 1
    assert sample("riffle_dataflow_snapshot_duration_seconds_sum", labels) == 0.002


def test_state_bytes_sum_the_last_size_of_every_key() -> None:
    registry = CollectorRegistry()
    telemetry = FlowTelemetry(registry, size_every_s=0)
    small, big = ("p", 1), ("p", "x" * 1000)
    telemetry.snapshotted("windows", "a", small, 0.0)
    telemetry.snapshotted("windows", "b", small, 0.0)
    telemetry.snapshotted("windows", "b", big, 0.0)  # replaces b's size
    sample = registry.get_sample_value
    want = len(pickle.dumps(small, protocol=pickle.HIGHEST_PROTOCOL)) + len(
        pickle.dumps(big, protocol=pickle.HIGHEST_PROTOCOL)
    )
    assert sample("riffle_dataflow_state_bytes", {"stage": "windows"}) == want
    assert sample("riffle_dataflow_state_keys", {"stage": "windows"}) == 2
    assert sample("riffle_dataflow_state_bytes", {"stage": "ingest"}) == 0


def test_state_size_is_measured_at_most_every_interval() -> None:
    registry = CollectorRegistry()
    telemetry = FlowTelemetry(registry, size_every_s=3600)
    telemetry.snapshotted("ingest", "a", "x", 0.0)
    first = registry.get_sample_value("riffle_dataflow_state_bytes", {"stage": "ingest"})
    telemetry.snapshotted("ingest", "a", "x" * 5000, 0.0)  # too soon: not pickled again
    assert registry.get_sample_value("riffle_dataflow_state_bytes", {"stage": "ingest"}) == first
    labels = {"stage": "ingest"}
    assert registry.get_sample_value("riffle_dataflow_snapshot_duration_seconds_count", labels) == 2


def test_windows_stage_reports_open_and_kept_windows_over_shards() -> None:
    registry = CollectorRegistry()
    telemetry = FlowTelemetry(registry, size_every_s=0)
    shards = [
        BucketLogic(RULES, ["p0"], partial_ms=1000, telemetry=telemetry, resume=None)
        for _ in range(2)
    ]
    one = [1.0, 1.0, 1.0, 1.0]
    shards[0].on_batch(
        [
            BucketUpdate(
                "b000",
                "p0",
                T0 + MIN // 2,
                [
                    ("t", "views", (), T0, T0 + MIN, list(one)),
                    ("t", "spend", (), T0, T0 + MIN, one),
                ],
            )
        ]
    )
    shards[1].on_batch([BucketUpdate("b001", "p0", T0, [("t", "views", (), T0, T0 + MIN, one)])])
    for shard in shards:
        shard.snapshot()
    sample = registry.get_sample_value
    assert sample("riffle_dataflow_state_windows", {"state": "open"}) == 3
    assert sample("riffle_dataflow_state_windows", {"state": "closed_kept"}) == 0
    # The clock passes the minute: shard 0's windows close; "spend" is kept for corrections.
    shards[0].on_batch([BucketUpdate("b000", "p0", T0 + 2 * MIN, [])])
    shards[0].snapshot()
    assert sample("riffle_dataflow_state_windows", {"state": "open"}) == 1
    assert sample("riffle_dataflow_state_windows", {"state": "closed_kept"}) == 1
    assert sample("riffle_dataflow_state_keys", {"stage": "windows"}) == 2
    bytes_ = sample("riffle_dataflow_state_bytes", {"stage": "windows"})
    assert bytes_ is not None and bytes_ > 0


def test_the_flow_reports_snapshots_of_both_stages() -> None:
    """Bytewax snapshots every touched key each epoch, even without recovery."""
    _, _, registry = run(scenario(n=3000), partitions=2, buckets=4)
    sample = registry.get_sample_value
    for stage in ("ingest", "windows"):
        labels = {"stage": stage}
        count = sample("riffle_dataflow_snapshot_duration_seconds_count", labels)
        assert count is not None and count >= 1, stage
        size = sample("riffle_dataflow_state_bytes", labels)
        assert size is not None and size > 0, stage
        age = sample("riffle_dataflow_snapshot_age_seconds", labels)
        assert age is not None and 0 <= age < 60, stage
    assert sample("riffle_dataflow_state_keys", {"stage": "ingest"}) == 2
    shards = sample("riffle_dataflow_state_keys", {"stage": "windows"})
    assert shards is not None and 1 <= shards <= 4
